/* io/hf_write: HF model folders written from the fixtures load back with
 * identical weights and config (F32), BF16/F16 output rounds like
 * dlq_f32_to_bf16/f16, folders replace atomically; PEFT adapter write -> read
 * round trip and refusal of malformed adapters. */
#include <sys/stat.h>

#include "core/mapfile.h"
#include "io/hf_write.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "t.h"

static char g_dir[256];

static int weight_equal(const dlq_weight *a, const dlq_weight *b, dlq_dtype expect_dtype, const char *what) {
    if (a->rows != b->rows || a->cols != b->cols) { fprintf(stderr, "%s: shape differs\n", what); return 0; }
    size_t n = (size_t)(a->rows * a->cols);
    if (b->dtype != expect_dtype) { fprintf(stderr, "%s: dtype %d\n", what, b->dtype); return 0; }
    if (a->dtype == expect_dtype) return !memcmp(a->data, b->data, n * dlq_dtype_size(a->dtype));
    /* converted: b must equal a (as f32) rounded to expect_dtype */
    float *f = malloc(n * sizeof *f), *g = malloc(n * sizeof *g);
    dlq_to_f32(f, a->data, a->dtype, n);
    dlq_to_f32(g, b->data, b->dtype, n);
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        uint16_t want = expect_dtype == DLQ_BF16 ? dlq_f32_to_bf16(f[i]) : expect_dtype == DLQ_F16 ? dlq_f32_to_f16(f[i]) : 0;
        float wf = expect_dtype == DLQ_F32 ? f[i] : expect_dtype == DLQ_BF16 ? dlq_bf16_to_f32(want) : dlq_f16_to_f32(want);
        if (memcmp(&wf, &g[i], 4)) { fprintf(stderr, "%s[%zu]: %g != %g\n", what, i, g[i], wf); ok = 0; }
    }
    free(f);
    free(g);
    if (!ok) return 0;
    return 1;
}

static int models_equal(const dlq_model *a, const dlq_model *b, dlq_dtype dt) {
    int ok = weight_equal(&a->tok_emb, &b->tok_emb, dt, "tok_emb") && weight_equal(&a->out_norm, &b->out_norm, dt, "norm");
    if (!a->cfg.tied) ok = ok && weight_equal(&a->lm_head, &b->lm_head, dt, "lm_head");
    ok = ok && (a->cfg.tied == b->cfg.tied);
    for (int l = 0; ok && l < a->cfg.n_layers; l++) {
        const dlq_layer *x = &a->layers[l], *y = &b->layers[l];
        ok = weight_equal(&x->attn_norm, &y->attn_norm, dt, "attn_norm") && weight_equal(&x->wq, &y->wq, dt, "wq") &&
             weight_equal(&x->wk, &y->wk, dt, "wk") && weight_equal(&x->wv, &y->wv, dt, "wv") &&
             weight_equal(&x->wo, &y->wo, dt, "wo") && weight_equal(&x->ffn_norm, &y->ffn_norm, dt, "ffn_norm") &&
             weight_equal(&x->w_gate, &y->w_gate, dt, "gate") && weight_equal(&x->w_up, &y->w_up, dt, "up") &&
             weight_equal(&x->w_down, &y->w_down, dt, "down");
        if (ok && a->cfg.qkv_bias)
            ok = weight_equal(&x->bq, &y->bq, dt, "bq") && weight_equal(&x->bk, &y->bk, dt, "bk") && weight_equal(&x->bv, &y->bv, dt, "bv");
    }
    return ok;
}

static void roundtrip(const char *fixture, dlq_dtype out_dt) {
    char src[512], dst[512];
    snprintf(src, sizeof src, "tests/fixtures/hf/%s", fixture);
    snprintf(dst, sizeof dst, "%s/%s-%s", g_dir, fixture, dlq_dtype_name(out_dt));
    dlq_err err = {0};
    dlq_model *a = NULL, *b = NULL;
    if (dlq_model_load(&a, src, NULL, &err)) { CHECK(0, "load %s: %s", src, err.msg); return; }
    dlq_hf_tensor *t;
    size_t n;
    CHECK(dlq_hf_tensors_from_model(a, &t, &n, &err) == 0, "tensors: %s", err.msg);
    int rc = dlq_hf_write_model(dst, &a->cfg, t, n, out_dt, src, &err);
    CHECK(rc == 0, "%s: write: %s", fixture, err.msg);
    rc = rc ? rc : dlq_model_load(&b, dst, NULL, &err);
    CHECK(rc == 0, "%s: reload: %s", fixture, err.msg);
    if (b) {
        dlq_dtype expect = out_dt;
        CHECK(models_equal(a, b, expect), "%s -> %s: weights differ", fixture, dlq_dtype_name(out_dt));
        CHECK(!memcmp(&a->cfg, &b->cfg, sizeof a->cfg), "%s: config does not round-trip", fixture);
        char p[600];
        snprintf(p, sizeof p, "%s/generation_config.json", dst);
        CHECK(dlq_path_exists(p), "generation_config.json written");
        snprintf(p, sizeof p, "%s/config.json", dst);
        char *txt;
        size_t len;
        if (dlq_read_file(p, &txt, &len, &err) == 0) {
            const char *want = out_dt == DLQ_BF16 ? "\"torch_dtype\": \"bfloat16\"" : out_dt == DLQ_F16 ? "\"torch_dtype\": \"float16\"" : "\"torch_dtype\": \"float32\"";
            CHECK(strstr(txt, want), "%s: %s missing", fixture, want);
            CHECK(strstr(txt, "\"hidden_act\": \"silu\""), "hidden_act");
            free(txt);
        }
        dlq_safetensors st;
        snprintf(p, sizeof p, "%s/model.safetensors", dst);
        if (dlq_st_open(&st, p, &err) == 0) {
            CHECK(st.ntensors == n, "%s: %zu tensors written, %zu expected", fixture, st.ntensors, n);
            CHECK(dlq_st_find(&st, "model.layers.1.mlp.down_proj.weight") != NULL, "HF name present");
            CHECK((dlq_st_find(&st, "lm_head.weight") != NULL) == !a->cfg.tied, "lm_head iff not tied");
            dlq_st_close(&st);
        }
    }
    free(t);
    dlq_model_destroy(a);
    dlq_model_destroy(b);
}

static void test_names(void) {
    char b[200];
    CHECK(dlq_hf_tensor_name(b, sizeof b, 3, "q_proj", "weight") == 0 && !strcmp(b, "model.layers.3.self_attn.q_proj.weight"), "%s", b);
    CHECK(dlq_hf_tensor_name(b, sizeof b, 0, "down_proj", "weight") == 0 && !strcmp(b, "model.layers.0.mlp.down_proj.weight"), "%s", b);
    CHECK(dlq_hf_tensor_name(b, sizeof b, 1, "input_layernorm", "weight") == 0 && !strcmp(b, "model.layers.1.input_layernorm.weight"), "%s", b);
    CHECK(dlq_hf_tensor_name(b, sizeof b, 1, "k_proj", "bias") == 0 && !strcmp(b, "model.layers.1.self_attn.k_proj.bias"), "%s", b);
    CHECK(dlq_hf_tensor_name(b, sizeof b, 1, "lm_head", "weight") == DLQ_EINVAL, "unknown module");
    CHECK(dlq_peft_tensor_name(b, sizeof b, 12, "v_proj", 'B') == 0 &&
              !strcmp(b, "base_model.model.model.layers.12.self_attn.v_proj.lora_B.weight"), "%s", b);
    CHECK(dlq_peft_tensor_name(b, sizeof b, 0, "gate_proj", 'A') == 0 &&
              !strcmp(b, "base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight"), "%s", b);
    CHECK(dlq_peft_tensor_name(b, 10, 0, "gate_proj", 'A') == DLQ_EINVAL, "too small a buffer");
    CHECK(dlq_peft_tensor_name(b, sizeof b, 0, "gate_proj", 'C') == DLQ_EINVAL, "bad A/B");
}

static void test_folder_replace(void) {
    dlq_err err = {0};
    dlq_model *a = NULL;
    if (dlq_model_load(&a, "tests/fixtures/hf/llama", NULL, &err)) { CHECK(0, "load: %s", err.msg); return; }
    dlq_hf_tensor *t;
    size_t n;
    dlq_hf_tensors_from_model(a, &t, &n, &err);
    char dst[512], p[700], tok[512];
    /* tokenizer files are copied when present */
    snprintf(tok, sizeof tok, "%s/toksrc", g_dir);
    mkdir(tok, 0755);
    snprintf(p, sizeof p, "%s/tokenizer.json", tok);
    FILE *f = fopen(p, "w");
    fputs("{\"model\": {}}", f);
    fclose(f);
    snprintf(dst, sizeof dst, "%s/replace", g_dir);
    CHECK(dlq_hf_write_model(dst, &a->cfg, t, n, DLQ_F32, tok, &err) == 0, "first: %s", err.msg);
    snprintf(p, sizeof p, "%s/tokenizer.json", dst);
    CHECK(dlq_path_exists(p), "tokenizer.json copied");
    snprintf(p, sizeof p, "%s/tokenizer.model", dst);
    CHECK(!dlq_path_exists(p), "absent tokenizer.model not invented");
    /* second write replaces the folder (stale files go) */
    snprintf(p, sizeof p, "%s/stale.txt", dst);
    f = fopen(p, "w");
    fputs("x", f);
    fclose(f);
    CHECK(dlq_hf_write_model(dst, &a->cfg, t, n, DLQ_BF16, NULL, &err) == 0, "replace: %s", err.msg);
    CHECK(!dlq_path_exists(p), "previous folder replaced");
    /* a folder with sub-folders is not replaced */
    snprintf(p, sizeof p, "%s/sub", dst);
    mkdir(p, 0755);
    CHECK(dlq_hf_write_model(dst, &a->cfg, t, n, DLQ_F32, NULL, &err) == DLQ_EINVAL && strstr(err.msg, "sub-folders"),
          "refuse: %s", err.msg);
    CHECK(dlq_path_exists(p), "sub-folder untouched");
    /* no temporary folders left next to it */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -d %s/replace.tmp.* >/dev/null 2>&1", g_dir);
    CHECK(system(cmd) != 0, "temporary folder left behind");
    /* bad tensor: wrong dtype -> error, nothing installed */
    dlq_hf_tensor bad = t[0];
    bad.dtype = DLQ_I32;
    snprintf(dst, sizeof dst, "%s/bad", g_dir);
    CHECK(dlq_hf_write_model(dst, &a->cfg, &bad, 1, DLQ_F32, NULL, &err) == DLQ_EINVAL && strstr(err.msg, "embed_tokens"),
          "bad dtype: %s", err.msg);
    CHECK(!dlq_path_exists(dst), "failed write leaves no folder");
    snprintf(cmd, sizeof cmd, "ls -d %s/bad.tmp.* >/dev/null 2>&1", g_dir);
    CHECK(system(cmd) != 0, "temporary folder left behind after failure");
    free(t);
    dlq_model_destroy(a);
}

static void fill(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] = s * (float)((int)(i * 7919 % 97) - 48) / 48.0f;
}

static void test_peft(void) {
    dlq_err err = {0};
    dlq_config cfg;
    if (dlq_config_from_hf(&cfg, "tests/fixtures/hf/llama/config.json", &err)) { CHECK(0, "%s", err.msg); return; }
    dlq_peft_config pc = {.r = 4, .lora_alpha = 8, .n_targets = 3};
    snprintf(pc.target_modules[0], 32, "q_proj");
    snprintf(pc.target_modules[1], 32, "v_proj");
    snprintf(pc.target_modules[2], 32, "down_proj");
    snprintf(pc.base_model, sizeof pc.base_model, "tests/fixtures/hf/llama");
    static float buf[2][3][2][4 * 96];
    dlq_hf_tensor t[12];
    size_t n = 0;
    for (int l = 0; l < 2; l++)
        for (int m = 0; m < 3; m++) {
            const char *mod = pc.target_modules[m];
            int64_t in = m == 2 ? 96 : 64, out = m == 0 ? 64 : m == 1 ? 32 : 64;
            for (int ab = 0; ab < 2; ab++) {
                dlq_hf_tensor *x = &t[n++];
                memset(x, 0, sizeof *x);
                dlq_peft_tensor_name(x->name, sizeof x->name, l, mod, ab ? 'B' : 'A');
                float *d = buf[l][m][ab];
                fill(d, (size_t)(ab ? out * 4 : 4 * in), 0.01f * (float)(1 + l + m + ab));
                x->data = d;
                x->dtype = DLQ_F32;
                x->ndim = 2;
                x->shape[0] = ab ? out : 4;
                x->shape[1] = ab ? 4 : in;
            }
        }
    char dir[512];
    snprintf(dir, sizeof dir, "%s/adapter", g_dir);
    CHECK(dlq_peft_write_adapter(dir, &pc, t, n, &err) == 0, "write adapter: %s", err.msg);
    dlq_peft_adapter *a = NULL;
    CHECK(dlq_peft_read_adapter(dir, &cfg, &a, &err) == 0, "read adapter: %s", err.msg);
    if (a) {
        CHECK(a->cfg.r == 4 && a->cfg.lora_alpha == 8 && a->cfg.n_targets == 3 && !a->cfg.use_rslora, "config");
        CHECK(fabs(a->scaling - 2.0) < 1e-12, "scaling %g", a->scaling);
        CHECK(a->n_pairs == 6, "pairs %zu", a->n_pairs);
        int ok = 1;
        for (int l = 0; l < 2; l++)
            for (int m = 0; m < 3; m++) {
                const dlq_lora_pair *p = dlq_peft_find(a, l, pc.target_modules[m]);
                int64_t in = m == 2 ? 96 : 64, out = m == 0 ? 64 : m == 1 ? 32 : 64;
                ok = ok && p && p->in == in && p->out == out && !memcmp(p->A, buf[l][m][0], (size_t)(4 * in) * 4) &&
                     !memcmp(p->B, buf[l][m][1], (size_t)(4 * out) * 4);
            }
        CHECK(ok, "adapter tensors round-trip");
        CHECK(!strcmp(a->pairs[0].module, "q_proj") && a->pairs[0].layer == 0 && a->pairs[5].layer == 1 &&
                  !strcmp(a->pairs[5].module, "down_proj"), "pairs sorted by layer, module");
        dlq_peft_adapter_free(a);
    }
    /* rslora scaling */
    pc.use_rslora = 1;
    CHECK(dlq_peft_write_adapter(dir, &pc, t, n, &err) == 0, "rewrite: %s", err.msg);
    a = NULL;
    CHECK(dlq_peft_read_adapter(dir, NULL, &a, &err) == 0 && a && fabs(a->scaling - 4.0) < 1e-12, "rslora scaling: %s", err.msg);
    dlq_peft_adapter_free(a);
    pc.use_rslora = 0;
    /* writer refusals */
    dlq_hf_tensor bad = t[0];
    snprintf(bad.name, sizeof bad.name, "model.layers.0.self_attn.q_proj.weight");
    CHECK(dlq_peft_write_adapter(dir, &pc, &bad, 1, &err) == DLQ_EINVAL && strstr(err.msg, "PEFT"), "bad name: %s", err.msg);
    bad = t[0];
    bad.shape[0] = 5;
    CHECK(dlq_peft_write_adapter(dir, &pc, &bad, 1, &err) == DLQ_EINVAL && strstr(err.msg, "r = 4"), "bad shape: %s", err.msg);
    /* reader refusals: unpaired A, wrong model shapes, not LoRA */
    char d2[512], p[700];
    snprintf(d2, sizeof d2, "%s/adapter-unpaired", g_dir);
    CHECK(dlq_peft_write_adapter(d2, &pc, t, 1, &err) == 0, "write unpaired: %s", err.msg);
    a = NULL;
    CHECK(dlq_peft_read_adapter(d2, NULL, &a, &err) == DLQ_EFORMAT && !a && strstr(err.msg, "no lora_B"), "unpaired: %s", err.msg);
    dlq_config small = cfg;
    small.dim = 32;
    CHECK(dlq_peft_read_adapter(dir, &small, &a, &err) == DLQ_EFORMAT && !a && strstr(err.msg, "the model's"), "model shapes: %s", err.msg);
    small = cfg;
    small.n_layers = 1;
    CHECK(dlq_peft_read_adapter(dir, &small, &a, &err) == DLQ_EFORMAT && strstr(err.msg, "layer 1"), "layers: %s", err.msg);
    snprintf(p, sizeof p, "%s/adapter_config.json", d2);
    FILE *f = fopen(p, "w");
    fputs("{\"peft_type\": \"IA3\", \"r\": 4}", f);
    fclose(f);
    CHECK(dlq_peft_read_adapter(d2, NULL, &a, &err) == DLQ_EUNSUP && strstr(err.msg, "IA3"), "IA3: %s", err.msg);
    f = fopen(p, "w");
    fputs("{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": \"q_proj|v_proj\"}", f);
    fclose(f);
    CHECK(dlq_peft_read_adapter(d2, NULL, &a, &err) == DLQ_EUNSUP && strstr(err.msg, "regular expression"), "regex: %s", err.msg);
    f = fopen(p, "w");
    fputs("{\"peft_type\": \"LORA\", \"r\": 4, \"use_dora\": true, \"target_modules\": [\"q_proj\"]}", f);
    fclose(f);
    CHECK(dlq_peft_read_adapter(d2, NULL, &a, &err) == DLQ_EUNSUP && strstr(err.msg, "DoRA"), "dora: %s", err.msg);
    f = fopen(p, "w");
    fputs("{\"peft_type\": \"LORA\", \"r\": 4,", f);
    fclose(f);
    CHECK(dlq_peft_read_adapter(d2, NULL, &a, &err) == DLQ_EFORMAT && strstr(err.msg, "invalid JSON"), "bad json: %s", err.msg);
    snprintf(d2, sizeof d2, "%s/nothing-here", g_dir);
    CHECK(dlq_peft_read_adapter(d2, NULL, &a, &err) == DLQ_EIO && strstr(err.msg, "nothing-here"), "missing: %s", err.msg);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/dlq_test_hfw_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    test_names();
    const char *fx[] = {"llama", "llama-tied", "llama3-rope", "mistral", "qwen2", "llama-f16-sharded"};
    for (size_t i = 0; i < sizeof fx / sizeof fx[0]; i++) roundtrip(fx[i], DLQ_F32);
    roundtrip("llama", DLQ_BF16);
    roundtrip("llama", DLQ_F16);
    roundtrip("llama-bf16", DLQ_BF16);
    test_folder_replace();
    test_peft();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (!t_fail && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    else if (t_fail) fprintf(stderr, "outputs kept in %s\n", g_dir);
    return T_DONE();
}
