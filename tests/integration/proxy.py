"""A loopback TCP proxy that cuts connections: proxy.py LISTEN_PORT TARGET_PORT CUT_AFTER_BYTES.
The first connection that has carried CUT_AFTER_BYTES from the server to the client is closed
abruptly (both sides); later connections are forwarded untouched. Prints the cut count on exit.
Stops by itself after 120 s."""
import socket
import sys
import threading
import time

listen_port, target_port, cut_after = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cuts = 0
lock = threading.Lock()


def pump(src, dst, count, state):
    global cuts
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
            if count:
                state["down"] += len(data)
                with lock:
                    if cuts == 0 and state["down"] >= cut_after:
                        cuts += 1
                        print("cut after", state["down"], "bytes", flush=True)
                        for s in (src, dst):
                            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                            s.close()
                        return
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve():
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", listen_port))
    ls.listen(16)
    print("listening", flush=True)
    while True:
        c, _ = ls.accept()
        u = socket.create_connection(("127.0.0.1", target_port))
        state = {"down": 0}
        threading.Thread(target=pump, args=(c, u, False, state), daemon=True).start()
        threading.Thread(target=pump, args=(u, c, True, state), daemon=True).start()


threading.Thread(target=serve, daemon=True).start()
time.sleep(120)
