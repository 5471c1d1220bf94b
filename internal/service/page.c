/* GetJobs page tokens: "v1." and the sequence number the next page continues before. Pure (the
 * rpc_messages fuzz target links it alone). */
#include "service/service.h"

#include <errno.h>
#include <string.h>

int service_page_token_parse(const char *token, int64_t *ret_seq)
{
    *ret_seq = 0;
    if (!token || !*token)
        return 0;
    if (strncmp(token, "v1.", 3) != 0)
        return -EINVAL;
    const char *p = token + 3;
    if (*p < '1' || *p > '9' || strlen(p) > 18)
        return -EINVAL;
    int64_t v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        v = v * 10 + (*p - '0');
    }
    *ret_seq = v;
    return 0;
}
