/* The other requests the server decodes, and the DataChunk wire form it writes by hand.
 *
 * The first input byte picks the case, the rest is the message:
 *   0 GetJobReq, 1 StopJobReq (lookup_job in internal/rpc/server.c), 2 GetJobsStreamReq
 *   (stream_open in internal/rpc/stream.c), 5 DeleteJobReq: codec_unpack from a gRPC byte
 *   buffer, then the id check the handlers do; 3 GetJobsReq: codec_unpack, then the page token
 *   parser (an accepted token is "" or "v1." and a positive decimal that reads back the same);
 *   4 DataChunk: codec_chunk_header + data + codec_chunk_trailer must be a message that
 *   protobuf-c decodes to exactly that data and offset (the first 8 bytes give the offset). */
#include "fuzz.h"

#include "rpc/codec.h"
#include "service/service.h"
#include "util/misc.h"

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/slice.h>

static ProtobufCMessage *unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                                size_t size)
{
    grpc_byte_buffer *bb = NULL;
    if (size) {
        grpc_slice s = grpc_slice_from_copied_buffer((const char *)data, size);
        bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
    }
    ProtobufCMessage *m = NULL;
    jw_error err = JW_ERROR_INIT;
    int r = codec_unpack(desc, bb, &m, &err);
    if (bb)
        grpc_byte_buffer_destroy(bb);
    if (r < 0) {
        FUZZ_CHECK(r == -EINVAL && err.code == JW_INVALID_ARGUMENT && err.msg[0]);
        return NULL;
    }
    FUZZ_CHECK(m && m->descriptor == desc);
    return m;
}

/* The handlers' id rule: non-empty and a canonical UUID, which is what makes it safe to print
 * and to use as a file name under the data directory. */
static void check_id(const char *id)
{
    FUZZ_CHECK(id != NULL);
    if (!*id || !uuid_is_valid(id))
        return;
    FUZZ_CHECK(strlen(id) == UUID_STR_LEN - 1);
    for (const char *p = id; *p; p++)
        FUZZ_CHECK((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
                   (*p >= 'A' && *p <= 'F') || *p == '-');
}

static void chunk_roundtrip(const uint8_t *data, size_t size)
{
    int64_t offset = 0;
    int stream = 0;
    if (size >= 8) {
        memcpy(&offset, data, 8);
        data += 8;
        size -= 8;
    }
    if (size >= 1) {
        stream = data[0] % 3; /* both, stdout, stderr */
        data++;
        size--;
    }
    uint8_t *buf = malloc(size + CODEC_CHUNK_OVERHEAD);
    if (!buf)
        abort();
    size_t h = codec_chunk_header(buf, size);
    FUZZ_CHECK(h >= 2 && h <= CODEC_CHUNK_OVERHEAD / 2);
    if (size)
        memcpy(buf + h, data, size);
    size_t t = codec_chunk_trailer(buf + h + size, offset, stream);
    FUZZ_CHECK(h + t <= CODEC_CHUNK_OVERHEAD);
    Jobworker__V1__DataChunk *c = jobworker__v1__data_chunk__unpack(NULL, h + size + t, buf);
    FUZZ_CHECK(c != NULL);
    FUZZ_CHECK(c->offset == offset);
    FUZZ_CHECK((int)c->stream == stream);
    FUZZ_CHECK(c->data.len == size);
    FUZZ_CHECK(size == 0 || memcmp(c->data.data, data, size) == 0);
    jobworker__v1__data_chunk__free_unpacked(c, NULL);
    free(buf);
}

static void check_token(const char *tok)
{
    int64_t seq = -1;
    if (service_page_token_parse(tok, &seq) < 0)
        return;
    if (!tok || !*tok) {
        if (seq != 0)
            abort();
        return;
    }
    char back[SERVICE_PAGE_TOKEN_MAX];
    snprintf(back, sizeof(back), "v1.%lld", (long long)seq);
    if (seq <= 0 || strcmp(back, tok) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned which = data[0] % 6;
    data++;
    size--;
    ProtobufCMessage *m = NULL;
    switch (which) {
    case 0:
        if ((m = unpack(&jobworker__v1__get_job_req__descriptor, data, size)))
            check_id(((Jobworker__V1__GetJobReq *)m)->id);
        break;
    case 1:
        if ((m = unpack(&jobworker__v1__stop_job_req__descriptor, data, size)))
            check_id(((Jobworker__V1__StopJobReq *)m)->id);
        break;
    case 2:
        if ((m = unpack(&jobworker__v1__get_jobs_stream_req__descriptor, data, size)))
            check_id(((Jobworker__V1__GetJobsStreamReq *)m)->id);
        break;
    case 3:
        if ((m = unpack(&jobworker__v1__get_jobs_req__descriptor, data, size)))
            check_token(((Jobworker__V1__GetJobsReq *)m)->page_token);
        break;
    case 5:
        if ((m = unpack(&jobworker__v1__delete_job_req__descriptor, data, size)))
            check_id(((Jobworker__V1__DeleteJobReq *)m)->id);
        break;
    default: chunk_roundtrip(data, size); break;
    }
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
