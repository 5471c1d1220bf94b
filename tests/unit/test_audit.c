/* The audit line: one record is one line whatever a client puts in an id, a CN or a message. */
#include "rpc/audit.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_escape(void **state)
{
    (void)state;
    char buf[128];
    assert_string_equal(audit_escape("plain id-1", buf, sizeof(buf)), "plain id-1");
    assert_string_equal(audit_escape("a\nb", buf, sizeof(buf)), "a\\x0ab");
    assert_string_equal(audit_escape("\x1b[31m\a", buf, sizeof(buf)), "\\x1b[31m\\x07");
    assert_string_equal(audit_escape("q\"b\\", buf, sizeof(buf)), "q\\x22b\\x5c");
    assert_string_equal(audit_escape("\xc3\xa9\x7f", buf, sizeof(buf)), "\\xc3\\xa9\\x7f");
    assert_string_equal(audit_escape(NULL, buf, sizeof(buf)), "");
    /* Cut at the buffer, never inside an escape. */
    assert_string_equal(audit_escape("ab\ncd", buf, 5), "ab");
    assert_string_equal(audit_escape("abcdef", buf, 4), "abc");
}

/* A request id with a newline cannot write a second, forged record. */
static void test_one_record_one_line(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    auth_identity id = {.cn = "eve\" role=admin", .role = AUTH_ROLE_VIEWER};
    audit_write(f, &id, AUTH_METHOD_GET_JOB,
                "x\n2026-01-01T00:00:00.000Z audit cn=\"root\" role=admin method=StopJob",
                JW_INVALID_ARGUMENT, "id 'x\n' is not a job id\r\x1b");
    fclose(f);
    int lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    assert_int_equal(lines, 1);
    assert_int_equal(text[len - 1], '\n');
    assert_non_null(strstr(text, "cn=\"eve\\x22 role=admin\" role=viewer"));
    assert_non_null(strstr(text, "job=x\\x0a2026"));
    assert_null(strchr(text, '\r'));
    assert_null(strchr(text, '\x1b'));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_one_record_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
