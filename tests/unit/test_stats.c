/* Unit tests: libvirt statistics to JSON. */
#include "hxtest.h"

#include "hx_stats.h"

#include <string.h>

static void set_ull(virTypedParameter *p, const char *field, unsigned long long v)
{
    memset(p, 0, sizeof(*p));
    strcpy(p->field, field);
    p->type = VIR_TYPED_PARAM_ULLONG;
    p->value.ul = v;
}

static void groups_fields(void **state)
{
    (void)state;
    virTypedParameter p[7];
    set_ull(&p[0], "cpu.time", 123456789ULL);
    set_ull(&p[1], "block.count", 2);
    set_ull(&p[2], "block.0.rd.bytes", 512);
    set_ull(&p[3], "block.1.wr.reqs", 7);
    set_ull(&p[4], "balloon.current", 131072);
    memset(&p[5], 0, sizeof(p[5]));
    strcpy(p[5].field, "block.0.name");
    p[5].type = VIR_TYPED_PARAM_STRING;
    p[5].value.s = (char *)"vda";
    set_ull(&p[6], "nodot", 1);
    json_t *j = hx_stats_group(p, 7);
    char *s = json_dumps(j, JSON_SORT_KEYS);
    assert_string_equal(s, "{\"balloon\": {\"current\": 131072}, \"block\": {\"items\": "
                           "[{\"name\": \"vda\", \"rd_bytes\": 512}, {\"wr_reqs\": 7}]}, "
                           "\"cpu\": {\"time\": 123456789}}");
    free(s);
    json_decref(j);
}

static void state_names(void **state)
{
    (void)state;
    assert_string_equal(hx_stats_state_name(VIR_DOMAIN_RUNNING, 1), "running");
    assert_string_equal(hx_stats_state_name(VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_MIGRATED),
                        "running");
    assert_string_equal(hx_stats_state_name(VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_USER), "paused");
    assert_string_equal(hx_stats_state_name(VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_MIGRATION),
                        "migrating");
    assert_string_equal(hx_stats_state_name(VIR_DOMAIN_SHUTOFF, 0), "shutoff");
    assert_string_equal(hx_stats_state_name(VIR_DOMAIN_SHUTDOWN, 0), "stopping");
    assert_string_equal(hx_stats_state_name(VIR_DOMAIN_CRASHED, 0), "crashed");
    assert_string_equal(hx_stats_state_name(VIR_DOMAIN_PMSUSPENDED, 0), "suspended");
    assert_string_equal(hx_stats_state_name(VIR_DOMAIN_BLOCKED, 0), "running");
    assert_string_equal(hx_stats_state_name(99, 0), "unknown");
}

static void cpu_percent(void **state)
{
    (void)state;
    /* 0.5 s of CPU over 1 s of wall time: 50 %. */
    assert_float_equal(
        hx_stats_cpu_percent(1000000000ULL, 10000000000LL, 1500000000ULL, 11000000000LL), 50.0,
        1e-9);
    assert_true(hx_stats_cpu_percent(0, 0, 5, 10) < 0);      /* no previous sample */
    assert_true(hx_stats_cpu_percent(10, 100, 5, 200) < 0);  /* counter went back */
    assert_true(hx_stats_cpu_percent(10, 100, 20, 100) < 0); /* no time passed */
}

static void iso_time(void **state)
{
    (void)state;
    char buf[40];
    hx_stats_iso_time(1700000000123456789LL, buf, sizeof(buf));
    assert_string_equal(buf, "2023-11-14T22:13:20.123Z");
}

HXT_MAIN(cmocka_unit_test(groups_fields), cmocka_unit_test(state_names),
         cmocka_unit_test(cpu_percent), cmocka_unit_test(iso_time))
