/* Model loading rejects bad input with a message naming the problem:
 * malformed / inconsistent config.json, missing or misshaped tensors,
 * truncated weights, unknown formats. Also dlq_model_n_params and the
 * CLI's handling of bad flags. */
#include <sys/stat.h>

#include "core/mapfile.h"
#include "model/model.h"
#include "kernels/blas_env.h"
#include "t.h"

static char tmpdir[256];

static void write_file(const char *name, const void *data, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

static void copy_file(const char *from, const char *name, size_t limit) {
    char *buf;
    size_t n;
    dlq_err err;
    if (dlq_read_file(from, &buf, &n, &err)) { CHECK(0, "%s", err.msg); return; }
    write_file(name, buf, limit && limit < n ? limit : n);
    free(buf);
}

/* writes fixture llama's config with one substitution applied */
static void config_with(const char *from, const char *to) {
    char *buf;
    size_t n;
    dlq_err err;
    dlq_read_file("tests/fixtures/hf/llama/config.json", &buf, &n, &err);
    char out[8192];
    const char *at = from ? strstr(buf, from) : NULL;
    if (at) snprintf(out, sizeof out, "%.*s%s%s", (int)(at - buf), buf, to, at + strlen(from));
    else snprintf(out, sizeof out, "%s", buf);
    write_file("config.json", out, strlen(out));
    free(buf);
}

static void expect_fail(const char *what, const char *needle) {
    dlq_model *m = NULL;
    dlq_err err = {0};
    int rc = dlq_model_load(&m, tmpdir, NULL, &err);
    CHECK(rc != 0 && m == NULL, "%s: load should fail", what);
    CHECK(rc == 0 || strstr(err.msg, needle), "%s: message \"%s\" should mention \"%s\"", what, err.msg, needle);
    if (m) dlq_model_destroy(m);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dlqat-test-load-XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    copy_file("tests/fixtures/hf/llama/model.safetensors", "model.safetensors", 0);

    config_with(NULL, NULL);
    dlq_model *m = NULL;
    dlq_err err = {0};
    CHECK(dlq_model_load(&m, tmpdir, NULL, &err) == 0, "baseline copy loads: %s", err.msg);
    if (m) {
        CHECK(dlq_model_n_params(m) == 64 * 256 * 2 + 64 + 2 * (2 * 64 + 64 * 64 * 2 + 2 * 64 * 32 + 3 * 64 * 96),
              "parameter count %lld", (long long)dlq_model_n_params(m));
        CHECK(m->tok == NULL, "no tokenizer in the fixture");
        dlq_model_destroy(m);
    }
    config_with("\"hidden_size\": 64", "\"hidden_size\": 96");
    expect_fail("hidden size mismatch", "model.embed_tokens.weight");
    config_with("\"intermediate_size\": 96", "\"intermediate_size\": 97");
    expect_fail("MLP width mismatch", "gate_proj");
    config_with("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3");
    expect_fail("kv heads not dividing heads", "key/value heads");
    {
        const char *c = "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\", \"hidden_size\": 64}";
        write_file("config.json", c, strlen(c));
    }
    expect_fail("unknown architecture", "unsupported model");
    config_with("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"");
    expect_fail("activation", "gelu");
    config_with("\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}");
    expect_fail("yarn rope", "yarn");
    config_with("{", "[");
    expect_fail("malformed JSON", "invalid JSON");
    config_with("\"vocab_size\": 256", "\"vocab_size\": \"many\"");
    expect_fail("vocab not an integer", "vocab_size");

    config_with(NULL, NULL);
    copy_file("tests/fixtures/hf/llama/model.safetensors", "model.safetensors", 5000);
    expect_fail("truncated safetensors", "model.safetensors");
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", tmpdir);
    unlink(p);
    expect_fail("no weights", tmpdir);

    CHECK(dlq_model_load(&m, "tests/t.h", NULL, &err) == DLQ_EINVAL && strstr(err.msg, "unknown model format"),
          "unknown format: %s", err.msg);
    CHECK(dlq_model_load(&m, "/nonexistent.gguf", NULL, &err) != 0 && strstr(err.msg, "/nonexistent.gguf"),
          "missing file: %s", err.msg);

    /* a required field absent is "missing", not "0 is invalid" */
    config_with("\"hidden_size\"", "\"hidden_size_renamed\"");
    expect_fail("no hidden_size", "\"hidden_size\" is missing");
    config_with(NULL, NULL);
    /* a folder without config.json names what it holds instead */
    CHECK(dlq_model_load(&m, "models/stories260K", NULL, &err) == DLQ_EINVAL &&
              strstr(err.msg, "without config.json") && strstr(err.msg, "models/stories260K/stories260K.bin"),
          "folder without config.json: %s", err.msg);

    /* llama2.c with a truncated file, and GGUF with a truncated file */
    snprintf(p, sizeof p, "%s/x.bin", tmpdir);
    copy_file("models/stories260K/stories260K.bin", "x.bin", 100000);
    CHECK(dlq_model_load(&m, p, NULL, &err) == DLQ_EFORMAT, "truncated llama2.c: %s", err.msg);
    snprintf(p, sizeof p, "%s/x.gguf", tmpdir);
    copy_file("tests/fixtures/gguf/llama-f32.gguf", "x.gguf", 200000);
    CHECK(dlq_model_load(&m, p, NULL, &err) == DLQ_EFORMAT, "truncated gguf: %s", err.msg);

    /* CLI: unknown flags and bad values exit 2 with a message, missing files exit 1 */
    if (access("build/dlqat", X_OK) == 0) {
        CHECK(system("build/dlqat ppl --model models/english-mix-7M --bogus 2>/dev/null") >> 8 == 2, "unknown flag -> exit 2");
        CHECK(system("build/dlqat ppl --model models/english-mix-7M --text x --ctx -5 2>/dev/null") >> 8 == 2, "bad --ctx -> exit 2");
        CHECK(system("build/dlqat ppl --model models/english-mix-7M --text /nonexistent 2>/dev/null") >> 8 == 1, "missing text -> exit 1");
        CHECK(system("build/dlqat frobnicate 2>/dev/null") >> 8 == 2, "unknown command -> exit 2");
        CHECK(system("build/dlqat info models/english-mix-7M >/dev/null") == 0, "info works");
        CHECK(system("build/dlqat --version | grep -q '^dlqat [0-9]'") == 0, "--version");
        /* the start-up environment (kernels/blas_env.h): with nothing set, dlqat never runs a BLAS kernel set the CPU
           outclasses and waits passively; what the user sets is kept; DLQ_AUTO_ENV=0 changes nothing */
        CHECK(system("env -u OPENBLAS_CORETYPE -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT build/dlqat --version | "
                     "grep '^blas' | grep -qv WARNING") == 0, "default start: no fallback kernels");
        CHECK(system("env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT build/dlqat --version | grep -q 'OMP_WAIT_POLICY=passive'") == 0,
              "default start: passive OpenMP waits");
        CHECK(system("OMP_WAIT_POLICY=active OPENBLAS_CORETYPE=Prescott build/dlqat --version | "
                     "grep -q 'OPENBLAS_CORETYPE=Prescott GOMP_SPINCOUNT=(unset) OMP_WAIT_POLICY=active'") == 0,
              "user-set variables are kept");
        if (dlq_blas_best_core())
            CHECK(system("DLQ_AUTO_ENV=0 OPENBLAS_CORETYPE=Prescott build/dlqat --version | grep '^blas' | grep -q WARNING") == 0,
                  "a forced Prescott kernel set on a CPU that can run %s is reported", dlq_blas_best_core());
    } else SKIP("build/dlqat not built");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) {}
    return T_DONE();
}
