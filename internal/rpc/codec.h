/* Conversions between protobuf-c messages, gRPC byte buffers and our own types. No I/O. */
#ifndef JW_RPC_CODEC_H
#define JW_RPC_CODEC_H

#include "jobworker/v1/jobworker.pb-c.h"
#include "job/job.h"
#include "store/store.h"
#include "util/error.h"

#include <grpc/byte_buffer.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Unpacks a request; NULL bb means an empty message. INVALID_ARGUMENT when it does not parse. */
int codec_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb,
                 ProtobufCMessage **ret, jw_error *err);
/* Packs a message into a new byte buffer (caller destroys). */
grpc_byte_buffer *codec_pack(const ProtobufCMessage *msg);

/* Walks the wire form of a CreateJobReq and rejects a NUL byte inside command or any arg, which
 * protobuf-c would otherwise silently truncate at. Pure function over bytes (fuzzable). */
int codec_check_create_strings(const uint8_t *buf, size_t len, jw_error *err);

/* The job module's view of a decoded CreateJobReq; strings borrow from req. (codec_unpack has
 * already refused NUL bytes, so strlen is the wire length.) */
void codec_job_request_from_pb(const Jobworker__V1__CreateJobReq *req, job_request *ret);

/* Fills a Job message from a snapshot. Pointers borrow from info and from *limits / *usage,
 * which the caller provides and keeps alive while the message is used.
 *
 * `admin_view`: Job.pid is job-init's pid in the host's PID namespace. It is useful to an
 * operator on the host (kill, perf, /proc/PID, nsenter) and is shown to admins, who may run
 * commands anyway; a viewer is read-only and learns nothing it can use from it but host pids,
 * so viewers get 0 (what Docker and Podman do: the host pid only in an admin's inspect). The
 * pid inside the job's namespace would say nothing: job-init is always 1, the command 2. The job's
 * extra environment (values may be secrets) is shown to admins only too. */
void codec_job_view(const store_job_info *info, bool admin_view, Jobworker__V1__Job *job,
                    Jobworker__V1__ResourceLimits *limits, Jobworker__V1__ResourceUsage *usage);

/* For listings: keeps the leading args whose bytes together stay within max_bytes (whole args
 * only, so no UTF-8 sequence is cut), and counts the rest in job->args_omitted. */
void codec_job_cut_args(Jobworker__V1__Job *job, size_t max_bytes);

/* A DataChunk's wire form written straight into a slice: header, `n` data bytes that the caller
 * reads into the returned data pointer, then the offset and stream fields (at most 13 bytes).
 * Each returns its size. */
size_t codec_chunk_header(uint8_t *buf, size_t data_len);
size_t codec_chunk_trailer(uint8_t *buf, int64_t offset, int stream);
#define CODEC_CHUNK_OVERHEAD 24

#endif
