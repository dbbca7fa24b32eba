/* train/checkpoint + train/metrics: round trip, CRC-32C vector, every
 * truncation and random bit flips refused (never crash), rotation falls back
 * to the previous good checkpoint, metrics truncation on resume. */
#include <stdint.h>
#include <sys/stat.h>

#include "core/mapfile.h"
#include "core/rng.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "t.h"

static char g_dir[256];

static void path_in(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", g_dir, name); }

static int write_bytes(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t k = fwrite(d, 1, n, f);
    fclose(f);
    return k == n ? 0 : -1;
}

/* writes a checkpoint with tensors a (n=37), b (n=0), "adam.m/layers.0.q_proj" (n=1000), meta */
static int make_ckpt(const char *path, float base, const char *meta, dlq_err *err) {
    static float a[37], c[1000];
    for (int i = 0; i < 37; i++) a[i] = base + (float)i * 0.5f;
    for (int i = 0; i < 1000; i++) c[i] = base - (float)i / 7.0f;
    dlq_ckpt_writer *w;
    int rc = dlq_ckpt_writer_new(&w, err);
    if (rc) return rc;
    if (!rc) rc = dlq_ckpt_add(w, "a", a, 37, err);
    if (!rc) rc = dlq_ckpt_add(w, "b", NULL, 0, err);
    if (!rc) rc = dlq_ckpt_add(w, "adam.m/layers.0.q_proj", c, 1000, err);
    if (!rc) rc = dlq_ckpt_set_meta(w, meta, err);
    if (!rc) rc = dlq_ckpt_commit(w, path, err);
    dlq_ckpt_writer_free(w);
    return rc;
}

static void test_roundtrip(void) {
    char p[512];
    path_in(p, sizeof p, "rt.dlqc");
    dlq_err err = {0};
    const char *meta = "{\"step\": 42, \"rng\": [1, 2, 3, 4], \"data_pos\": 123456}";
    int rc = make_ckpt(p, 1.25f, meta, &err);
    CHECK(rc == 0, "write: %s", err.msg);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    CHECK(!dlq_path_exists(tmp), "temporary file left behind");
    dlq_ckpt *ck = NULL;
    rc = dlq_ckpt_read(p, &ck, &err);
    CHECK(rc == 0 && ck, "read: %s", err.msg);
    if (!ck) return;
    CHECK(!strcmp(dlq_ckpt_meta(ck), meta), "meta: %s", dlq_ckpt_meta(ck));
    CHECK(dlq_ckpt_count(ck) == 3, "count %zu", dlq_ckpt_count(ck));
    size_t n;
    const float *a = dlq_ckpt_find(ck, "a", &n);
    CHECK(a && n == 37 && a[0] == 1.25f && a[36] == 1.25f + 18.0f, "tensor a");
    CHECK(a && ((uintptr_t)a & 63) == 0, "tensor data is 64-byte aligned");
    const float *b = dlq_ckpt_find(ck, "b", &n);
    CHECK(b && n == 0, "empty tensor b found with n=0");
    float c[1000];
    rc = dlq_ckpt_copy(ck, "adam.m/layers.0.q_proj", c, 1000, &err);
    CHECK(rc == 0 && c[999] == 1.25f - 999.0f / 7.0f, "copy: %s", err.msg);
    rc = dlq_ckpt_copy(ck, "adam.m/layers.0.q_proj", c, 999, &err);
    CHECK(rc == DLQ_EFORMAT && strstr(err.msg, "1000 elements, expected 999"), "size mismatch: %s", err.msg);
    CHECK(!dlq_ckpt_find(ck, "nope", &n) && n == 0, "missing tensor");
    const float *d;
    const char *nm = dlq_ckpt_tensor(ck, 2, &d, &n);
    CHECK(nm && !strcmp(nm, "adam.m/layers.0.q_proj") && n == 1000, "tensor by index");
    dlq_ckpt_free(ck);

    /* writer argument checks */
    dlq_ckpt_writer *w;
    dlq_ckpt_writer_new(&w, &err);
    float x = 1;
    CHECK(dlq_ckpt_add(w, "x", &x, 1, &err) == 0, "add");
    CHECK(dlq_ckpt_add(w, "x", &x, 1, &err) == DLQ_EINVAL && strstr(err.msg, "twice"), "duplicate: %s", err.msg);
    CHECK(dlq_ckpt_add(w, "", &x, 1, &err) == DLQ_EINVAL, "empty name");
    CHECK(dlq_ckpt_add(w, "y", NULL, 3, &err) == DLQ_EINVAL, "NULL data");
    /* no metadata: reads back as "" */
    path_in(p, sizeof p, "nometa.dlqc");
    CHECK(dlq_ckpt_commit(w, p, &err) == 0, "commit: %s", err.msg);
    dlq_ckpt_writer_free(w);
    rc = dlq_ckpt_read(p, &ck, &err);
    CHECK(rc == 0 && !strcmp(dlq_ckpt_meta(ck), ""), "empty meta");
    dlq_ckpt_free(ck);
    /* commit into a missing directory fails cleanly */
    path_in(p, sizeof p, "no/such/dir/x.dlqc");
    dlq_ckpt_writer_new(&w, &err);
    rc = dlq_ckpt_commit(w, p, &err);
    CHECK(rc == DLQ_EIO && strstr(err.msg, "no/such/dir"), "bad dir: %s", err.msg);
    dlq_ckpt_writer_free(w);
}

static void test_damage(void) {
    char p[512], q[512];
    path_in(p, sizeof p, "dmg.dlqc");
    path_in(q, sizeof q, "dmg-copy.dlqc");
    dlq_err err = {0};
    CHECK(make_ckpt(p, 3.0f, "{\"step\": 7}", &err) == 0, "write: %s", err.msg);
    char *buf;
    size_t len;
    CHECK(dlq_read_file(p, &buf, &len, &err) == 0, "read bytes");
    /* every truncation */
    int accepted = 0;
    for (size_t k = 0; k < len; k++) {
        write_bytes(q, buf, k);
        dlq_ckpt *ck = NULL;
        int rc = dlq_ckpt_read(q, &ck, &err);
        if (rc == 0 || ck) accepted++;
        else if (k >= 80 && !strstr(err.msg, "truncated")) { CHECK(0, "truncation to %zu: unclear message: %s", k, err.msg); break; }
        dlq_ckpt_free(ck);
    }
    CHECK(accepted == 0, "%d truncations accepted (of %zu)", accepted, len);
    /* one extra byte */
    char *big = malloc(len + 1);
    memcpy(big, buf, len);
    big[len] = 0;
    write_bytes(q, big, len + 1);
    dlq_ckpt *ck = NULL;
    CHECK(dlq_ckpt_read(q, &ck, &err) == DLQ_EFORMAT && !ck, "appended byte accepted");
    free(big);
    /* every single-bit flip in the first 256 bytes + random flips elsewhere */
    uint64_t seed = 20240607;
    printf("bit-flip seed %llu\n", (unsigned long long)seed);
    dlq_rng r;
    dlq_rng_seed(&r, seed);
    accepted = 0;
    int tries = 0, msg_ok = 0;
    for (int t = 0; t < 256 * 8 + 3000; t++) {
        size_t bit = t < 256 * 8 ? (size_t)t : (size_t)(dlq_rng_u64(&r) % (len * 8));
        int nflip = t < 256 * 8 ? 1 : 1 + (int)(dlq_rng_u64(&r) % 4);
        for (int f = 0; f < nflip; f++) {
            size_t b = f == 0 ? bit : (size_t)(dlq_rng_u64(&r) % (len * 8));
            buf[b / 8] ^= (char)(1u << (b % 8));
        }
        write_bytes(q, buf, len);
        ck = NULL;
        int rc = dlq_ckpt_read(q, &ck, &err);
        tries++;
        if (rc == 0 || ck) accepted++;
        else if (strstr(err.msg, "checksum mismatch: file is damaged")) msg_ok++;
        dlq_ckpt_free(ck);
        /* restore */
        free(buf);
        dlq_read_file(p, &buf, &len, &err);
    }
    CHECK(accepted == 0, "%d of %d bit-flipped files accepted", accepted, tries);
    CHECK(msg_ok > tries / 2, "only %d of %d flips reported a checksum mismatch", msg_ok, tries);
    /* a flip in the data gives the documented message */
    buf[len - 100] ^= 4;
    write_bytes(q, buf, len);
    CHECK(dlq_ckpt_read(q, &ck, &err) == DLQ_EFORMAT && strstr(err.msg, "checksum mismatch: file is damaged") &&
              strstr(err.msg, "dmg-copy.dlqc"),
          "message: %s", err.msg);
    free(buf);
    /* not a checkpoint / empty / missing */
    write_bytes(q, "hello world, this is not a checkpoint at all, clearly not one, nope.........", 76);
    CHECK(dlq_ckpt_read(q, &ck, &err) == DLQ_EFORMAT && strstr(err.msg, "not a dlqat checkpoint"), "%s", err.msg);
    write_bytes(q, "", 0);
    CHECK(dlq_ckpt_read(q, &ck, &err) == DLQ_EFORMAT, "empty file: %s", err.msg);
    path_in(q, sizeof q, "missing.dlqc");
    CHECK(dlq_ckpt_read(q, &ck, &err) == DLQ_EIO && strstr(err.msg, "missing.dlqc"), "missing: %s", err.msg);
    /* newer version with a valid checksum is refused as unsupported */
    dlq_read_file(p, &buf, &len, &err);
    buf[8] = 2;
    uint32_t crc = dlq_crc32c(0, buf, len - 16);
    for (int i = 0; i < 4; i++) buf[len - 16 + i] = (char)(crc >> (8 * i));
    path_in(q, sizeof q, "v2.dlqc");
    write_bytes(q, buf, len);
    CHECK(dlq_ckpt_read(q, &ck, &err) == DLQ_EUNSUP && strstr(err.msg, "version 2"), "version: %s", err.msg);
    /* structurally bad but checksummed: tensor offset pointing past the data */
    buf[8] = 1;
    /* index starts at 64 + pad8(meta len 11) = 80; entry 0 data offset at 80 */
    buf[80 + 7] = 0x7f;
    crc = dlq_crc32c(0, buf, len - 16);
    for (int i = 0; i < 4; i++) buf[len - 16 + i] = (char)(crc >> (8 * i));
    write_bytes(q, buf, len);
    CHECK(dlq_ckpt_read(q, &ck, &err) == DLQ_EFORMAT && strstr(err.msg, "out of range"), "offset: %s", err.msg);
    free(buf);
}

static void test_rotation(void) {
    char dir[512], latest[600], prev[600];
    path_in(dir, sizeof dir, "rot");
    snprintf(latest, sizeof latest, "%s/%s", dir, DLQ_CKPT_LATEST);
    snprintf(prev, sizeof prev, "%s/%s", dir, DLQ_CKPT_PREV);
    dlq_err err = {0};
    dlq_ckpt *ck = NULL;
    dlq_ckpt_load_info info;
    CHECK(dlq_ckpt_load_latest(dir, &ck, &info, &err) == DLQ_EIO && strstr(err.msg, "no checkpoint"), "empty: %s", err.msg);
    float v[8];
    for (int step = 1; step <= 3; step++) {
        for (int i = 0; i < 8; i++) v[i] = (float)(step * 100 + i);
        dlq_ckpt_writer *w;
        dlq_ckpt_writer_new(&w, &err);
        dlq_ckpt_add(w, "p", v, 8, &err);
        char meta[64];
        snprintf(meta, sizeof meta, "{\"step\": %d}", step);
        dlq_ckpt_set_meta(w, meta, &err);
        CHECK(dlq_ckpt_save_rotating(w, dir, &err) == 0, "save %d: %s", step, err.msg);
        dlq_ckpt_writer_free(w);
    }
    CHECK(dlq_ckpt_load_latest(dir, &ck, &info, &err) == 0 && !info.fell_back, "load: %s", err.msg);
    CHECK(ck && !strcmp(dlq_ckpt_meta(ck), "{\"step\": 3}"), "latest is step 3");
    dlq_ckpt_free(ck);
    CHECK(dlq_ckpt_read(prev, &ck, &err) == 0 && !strcmp(dlq_ckpt_meta(ck), "{\"step\": 2}"), "prev is step 2");
    dlq_ckpt_free(ck);
    /* damage latest: fall back to prev, reported */
    char *buf;
    size_t len;
    dlq_read_file(latest, &buf, &len, &err);
    buf[len / 2] ^= 0x10;
    write_bytes(latest, buf, len);
    free(buf);
    ck = NULL;
    CHECK(dlq_ckpt_load_latest(dir, &ck, &info, &err) == 0 && info.fell_back, "fallback: %s", err.msg);
    CHECK(ck && !strcmp(dlq_ckpt_meta(ck), "{\"step\": 2}"), "fell back to step 2");
    CHECK(strstr(info.latest_error, "checksum mismatch") && strstr(info.path, DLQ_CKPT_PREV), "info: %s / %s",
          info.latest_error, info.path);
    dlq_ckpt_free(ck);
    /* saving again with a damaged latest keeps the good prev (step 2) */
    dlq_ckpt_writer *w;
    dlq_ckpt_writer_new(&w, &err);
    dlq_ckpt_add(w, "p", v, 8, &err);
    dlq_ckpt_set_meta(w, "{\"step\": 4}", &err);
    CHECK(dlq_ckpt_save_rotating(w, dir, &err) == 0, "save 4: %s", err.msg);
    dlq_ckpt_writer_free(w);
    CHECK(dlq_ckpt_read(prev, &ck, &err) == 0 && !strcmp(dlq_ckpt_meta(ck), "{\"step\": 2}"), "prev kept at step 2");
    dlq_ckpt_free(ck);
    CHECK(dlq_ckpt_read(latest, &ck, &err) == 0 && !strcmp(dlq_ckpt_meta(ck), "{\"step\": 4}"), "latest is step 4");
    dlq_ckpt_free(ck);
    /* crash between "latest -> prev" and "tmp -> latest": latest missing, prev loads */
    rename(latest, prev);
    CHECK(dlq_ckpt_load_latest(dir, &ck, &info, &err) == 0 && info.fell_back && strstr(info.latest_error, "missing"),
          "missing latest: %s", err.msg);
    dlq_ckpt_free(ck);
    /* both damaged */
    write_bytes(prev, "DLQCKPT", 8);
    CHECK(dlq_ckpt_load_latest(dir, &ck, &info, &err) != 0 && !ck, "both bad accepted");
}

static int count_lines(const char *path, char *out, size_t cap) {
    char *t;
    size_t n;
    dlq_err e;
    if (dlq_read_file(path, &t, &n, &e)) return -1;
    int k = 0;
    for (size_t i = 0; i < n; i++) k += t[i] == '\n';
    snprintf(out, cap, "%s", t);
    free(t);
    return k;
}

static void test_metrics(void) {
    char p[512], text[4096];
    path_in(p, sizeof p, "metrics.jsonl");
    dlq_err err = {0};
    dlq_metrics *m;
    CHECK(dlq_metrics_open(&m, p, -1, NULL, &err) == 0, "open: %s", err.msg);
    for (int s = 1; s <= 10; s++) {
        if (s == 5) {
            dlq_metrics_begin(m);
            dlq_metrics_int(m, "step", s);
            dlq_metrics_num(m, "loss", 1.0 / 0.0);
            dlq_metrics_num(m, "val_loss", 2.5);
            dlq_metrics_str(m, "note", "eval \"quoted\"");
            CHECK(dlq_metrics_end(m, &err) == 0, "end: %s", err.msg);
        } else {
            CHECK(dlq_metrics_step(m, s, 4.0 - s * 0.1, 2e-4, 1000.5, s * 1.5, &err) == 0, "step: %s", err.msg);
        }
    }
    dlq_metrics_close(m, &err);
    CHECK(count_lines(p, text, sizeof text) == 10, "10 lines");
    CHECK(strstr(text, "{\"step\":1,\"loss\":3.9,\"lr\":0.0002,\"tokens_per_s\":1000.5,\"elapsed_s\":1.5}\n") == text,
          "first line: %.120s", text);
    CHECK(strstr(text, "{\"step\":5,\"loss\":null,\"val_loss\":2.5,\"note\":\"eval \\\"quoted\\\"\"}\n") != NULL,
          "record with null/str: %s", text);
    /* simulate a crash mid-line, then resume from step 6: steps 7..10 and the partial line go */
    FILE *f = fopen(p, "ab");
    fputs("{\"step\":11,\"lo", f);
    fclose(f);
    int64_t dropped = -1;
    CHECK(dlq_metrics_open(&m, p, 6, &dropped, &err) == 0, "resume: %s", err.msg);
    CHECK(dropped == 5, "dropped %lld lines, expected 5", (long long)dropped);
    for (int s = 7; s <= 8; s++) dlq_metrics_step(m, s, 1.0, 1e-4, 10, 20, &err);
    dlq_metrics_close(m, &err);
    CHECK(count_lines(p, text, sizeof text) == 8, "8 lines after resume: %s", text);
    int steps[16], ns = 0;
    for (char *q = text; (q = strstr(q, "\"step\":")) && ns < 16; q += 7) steps[ns++] = atoi(q + 7);
    int ok = ns == 8;
    for (int i = 0; i < ns && ok; i++) ok = steps[i] == i + 1;
    CHECK(ok, "steps after resume are 1..8 once each: %s", text);
    /* resume into a log that does not exist yet creates it */
    path_in(p, sizeof p, "fresh.jsonl");
    CHECK(dlq_metrics_open(&m, p, 100, &dropped, &err) == 0 && dropped == 0, "fresh resume: %s", err.msg);
    dlq_metrics_close(m, &err);
    path_in(p, sizeof p, "no/dir/m.jsonl");
    CHECK(dlq_metrics_open(&m, p, -1, NULL, &err) == DLQ_EIO && strstr(err.msg, "no/dir"), "bad path: %s", err.msg);
}

static void test_crc(void) {
    CHECK(dlq_crc32c(0, "123456789", 9) == 0xe3069283u, "crc32c check value %08x", dlq_crc32c(0, "123456789", 9));
    const char *s = "The quick brown fox jumps over the lazy dog, slice by eight.";
    size_t n = strlen(s);
    uint32_t whole = dlq_crc32c(0, s, n);
    int ok = 1;
    for (size_t k = 0; k <= n; k++) ok &= dlq_crc32c(dlq_crc32c(0, s, k), s + k, n - k) == whole;
    CHECK(ok, "crc32c is incremental");
}

static void test_signals(void) {
    volatile sig_atomic_t stop = 0;
    dlq_err err = {0};
    CHECK(dlq_install_stop_signals(&stop, &err) == 0, "install: %s", err.msg);
    raise(SIGTERM);
    CHECK(stop == 1, "SIGTERM sets the flag");
    stop = 0;
    CHECK(dlq_install_stop_signals(&stop, &err) == 0, "reinstall");
    raise(SIGINT);
    CHECK(stop == 1, "SIGINT sets the flag");
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/dlq_test_ckpt_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    test_crc();
    test_roundtrip();
    test_damage();
    test_rotation();
    test_metrics();
    test_signals();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (!t_fail && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return T_DONE();
}
