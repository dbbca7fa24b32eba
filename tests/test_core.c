/* core: dtype conversions (exhaustive over f16/bf16 round trips), mapfile, errors. */
#include "core/dtype.h"
#include "core/err.h"
#include "core/mapfile.h"
#include "t.h"

int main(void) {
    /* every finite f16 value round-trips through f32 exactly */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if (((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff)) continue; /* NaN payloads */
        float f = dlq_f16_to_f32((uint16_t)h);
        if (dlq_f32_to_f16(f) != h) bad++;
    }
    CHECK(bad == 0, "%d f16 values do not round-trip", bad);
    /* f16 rounding: halfway cases go to even */
    CHECK(dlq_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00, "1+2^-11 should round to 1.0 (even)");
    CHECK(dlq_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02, "1+3*2^-11 should round up to even");
    CHECK(dlq_f32_to_f16(65520.0f) == 0x7c00, "65520 overflows to inf");
    CHECK(dlq_f32_to_f16(65504.0f) == 0x7bff, "65504 is max f16");
    CHECK(dlq_f32_to_f16(5.96046448e-08f) == 0x0001, "smallest subnormal");
    CHECK(dlq_f32_to_f16(2.98023224e-08f) == 0x0000, "half of smallest subnormal rounds to even (0)");
    bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if (((h >> 7) & 0xff) == 0xff && (h & 0x7f)) continue;
        if (dlq_f32_to_bf16(dlq_bf16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK(bad == 0, "%d bf16 values do not round-trip", bad);
    CHECK(dlq_f32_to_bf16(1.0f + 1.0f / 256) == 0x3f80, "bf16 RNE tie to even");

    dlq_err err = {0};
    dlq_mapfile mf;
    int rc = dlq_mapfile_open(&mf, "/nonexistent/file", &err);
    CHECK(rc == DLQ_EIO && strstr(err.msg, "/nonexistent/file"), "error names the file: %s", err.msg);
    rc = dlq_mapfile_open(&mf, "tests/t.h", &err);
    CHECK(rc == 0 && mf.size > 100 && memcmp(mf.data, "/*", 2) == 0, "map tests/t.h");
    if (rc == 0) dlq_mapfile_close(&mf);
    return T_DONE();
}
