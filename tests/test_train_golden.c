/* Training engine vs PyTorch (scripts/gen_train_fixture.py, tests/fixtures/train):
 * the loss and EVERY parameter gradient of a tiny random Llama (full
 * fine-tuning and LoRA), then ten AdamW steps of losses (with clipping and
 * weight decay for full fine-tuning). Also: recomputation gives identical
 * gradients, and a repeated run is bit-identical. */
#include <jansson.h>

#include "io/safetensors.h"
#include "train/optim.h"
#include "train/tmodel.h"
#include "t.h"

static void ids2(json_t *a, int32_t *out, int B, int T) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) out[b * T + t] = (int32_t)json_integer_value(json_array_get(json_array_get(a, b), t));
}

/* max |ours - ref| / max |ref| over every tensor in ref_file that we train */
static double compare_grads(const dlq_tmodel *tm, const char *ref_file, int grads, const char **worst_name) {
    dlq_safetensors st;
    dlq_err err;
    if (dlq_st_open(&st, ref_file, &err)) { CHECK(0, "%s", err.msg); return 1e9; }
    double worst = 0;
    int matched = 0;
    for (size_t i = 0; i < st.ntensors; i++) {
        const dlq_tensor_info *t = &st.tensors[i];
        const dlq_ptensor *p = dlq_params_find(&tm->params, t->name);
        CHECK(p != NULL, "reference tensor %s has no parameter", t->name);
        if (!p) continue;
        CHECK((int64_t)p->n == dlq_tensor_numel(t), "%s: %zu vs %lld elements", t->name, p->n, (long long)dlq_tensor_numel(t));
        const float *ref = t->data, *ours = (grads ? tm->params.g : tm->params.w) + p->off;
        double mx = 0, d = 0;
        for (size_t j = 0; j < p->n; j++) { mx = fmax(mx, fabs(ref[j])); d = fmax(d, fabs(ours[j] - ref[j])); }
        double rel = d / (mx > 0 ? mx : 1);
        if (rel > worst) { worst = rel; *worst_name = p->name; }
        matched++;
    }
    CHECK(matched > 0, "no tensors compared in %s", ref_file);
    dlq_st_close(&st);
    return worst;
}

static void load_lora_init(dlq_tmodel *tm, const char *file) {
    dlq_safetensors st;
    dlq_err err;
    if (dlq_st_open(&st, file, &err)) { CHECK(0, "%s", err.msg); return; }
    for (size_t i = 0; i < st.ntensors; i++) {
        const dlq_ptensor *p = dlq_params_find(&tm->params, st.tensors[i].name);
        CHECK(p && (int64_t)p->n == dlq_tensor_numel(&st.tensors[i]), "lora init tensor %s", st.tensors[i].name);
        if (p) memcpy(tm->params.w + p->off, st.tensors[i].data, p->n * sizeof(float));
    }
    dlq_st_close(&st);
}

static void run_case(const char *name, dlq_train_mode mode, int recompute) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/train/%s.json", name);
    json_t *r = json_load_file(path, 0, NULL);
    if (!r) { SKIP("%s missing", path); return; }
    dlq_model *m;
    dlq_err err = {0};
    if (dlq_model_load(&m, "tests/fixtures/hf/llama", NULL, &err)) { CHECK(0, "%s", err.msg); json_decref(r); return; }
    int B = 2, T = 12;
    int32_t tok[24], tgt[24];
    ids2(json_object_get(r, "input_ids"), tok, B, T);
    ids2(json_object_get(r, "targets"), tgt, B, T);
    json_t *ad = json_object_get(r, "adamw");
    dlq_tmodel_opts o = {.mode = mode, .B = B, .T = T, .seed = 1, .recompute = recompute,
                         .lora_r = mode == DLQ_MODE_LORA ? 4 : 0, .lora_alpha = 8, .targets = 0x7f,
                         .weight_decay = mode == DLQ_MODE_FULL ? 0.01f : 0.0f};
    dlq_tmodel *tm;
    if (dlq_tmodel_create(&tm, m, &o, &err)) { CHECK(0, "%s", err.msg); dlq_model_destroy(m); json_decref(r); return; }
    if (mode == DLQ_MODE_LORA) load_lora_init(tm, "tests/fixtures/train/lora_init.safetensors");
    double loss_sum;
    int64_t nv;
    dlq_params_zero_grad(&tm->params);
    CHECK(dlq_tmodel_step(tm, tok, tgt, 1.0f, &loss_sum, &nv, &err) == 0, "%s", err.msg);
    double loss = loss_sum / (double)nv, want = json_number_value(json_object_get(r, "loss"));
    CHECK(nv == json_integer_value(json_object_get(r, "n_targets")) || mode == DLQ_MODE_LORA, "%lld targets", (long long)nv);
    CHECK(fabs(loss - want) < 2e-5, "%s: loss %.7f vs PyTorch %.7f", name, loss, want);
    const char *wn = "";
    snprintf(path, sizeof path, "tests/fixtures/train/%s_grads.safetensors", name);
    double g = compare_grads(tm, path, 1, &wn);
    CHECK(g < 1e-4, "%s (recompute %d): worst gradient error %.3g (relative to max |grad|) in %s", name, recompute, g, wn);
    printf("%-5s recompute=%d: loss %.7f (PyTorch %.7f), worst relative gradient error %.2e (%s)\n", name, recompute,
           loss, want, g, wn);

    /* ten AdamW steps on the same batch */
    dlq_params_alloc_optim(&tm->params, &err);
    dlq_adamw opt;
    dlq_adamw_init(&opt, 0.9f, 0.999f, 1e-6f);
    float lr = (float)json_number_value(json_object_get(ad, "lr"));
    json_t *losses = json_object_get(ad, "losses");
    json_t *clip = json_object_get(ad, "clip_grad_norm");
    double worst_loss = 0;
    for (int s = 0; s < 10; s++) {
        dlq_params_zero_grad(&tm->params);
        dlq_tmodel_step(tm, tok, tgt, 1.0f, &loss_sum, &nv, &err);
        double l = loss_sum / (double)nv, w = json_number_value(json_array_get(losses, (size_t)s));
        worst_loss = fmax(worst_loss, fabs(l - w));
        if (json_is_number(clip)) dlq_clip_grad_norm(&tm->params, json_number_value(clip));
        dlq_adamw_step(&opt, &tm->params, lr);
    }
    CHECK(worst_loss < 1e-4, "%s: AdamW losses differ from PyTorch by up to %.3g", name, worst_loss);
    snprintf(path, sizeof path, "tests/fixtures/train/%s_final.safetensors", name);
    double fp = compare_grads(tm, path, 0, &wn);
    CHECK(fp < 1e-3, "%s: parameters after 10 steps differ by %.3g (relative) in %s", name, fp, wn);
    printf("%-5s 10 AdamW steps: max loss difference %.2e, final parameters %.2e\n", name, worst_loss, fp);
    dlq_tmodel_destroy(tm);
    dlq_model_destroy(m);
    json_decref(r);
}

/* same seed, same thread count: two runs give bit-identical gradients */
static void determinism(void) {
    dlq_model *m;
    dlq_err err;
    if (dlq_model_load(&m, "tests/fixtures/hf/llama", NULL, &err)) return;
    dlq_tmodel_opts o = {.mode = DLQ_MODE_LORA, .B = 3, .T = 17, .seed = 7, .lora_r = 3, .lora_alpha = 6, .targets = 0x7f};
    int32_t tok[51], tgt[51];
    for (int i = 0; i < 51; i++) { tok[i] = (i * 37 + 11) % 256; tgt[i] = i % 5 == 0 ? -1 : (i * 53 + 3) % 256; }
    float *g1 = NULL;
    for (int rep = 0; rep < 2; rep++) {
        dlq_tmodel *tm;
        if (dlq_tmodel_create(&tm, m, &o, &err)) { CHECK(0, "%s", err.msg); break; }
        for (size_t i = 0; i < tm->params.total; i++) tm->params.w[i] += 0.0f; /* B = 0 at init: perturb B */
        for (int l = 0; l < tm->cfg.n_layers; l++)
            for (int p = 0; p < DLQ_N_PROJ; p++)
                for (int64_t j = 0; j < tm->layers[l].p[p].out * tm->layers[l].p[p].r; j++)
                    tm->layers[l].p[p].B[j] = 0.01f * (float)((j * 7 + l + p) % 13 - 6);
        double ls;
        int64_t nv;
        dlq_params_zero_grad(&tm->params);
        dlq_tmodel_step(tm, tok, tgt, 1.0f, &ls, &nv, &err);
        if (rep == 0) {
            g1 = malloc(tm->params.total * sizeof(float));
            memcpy(g1, tm->params.g, tm->params.total * sizeof(float));
        } else {
            CHECK(memcmp(g1, tm->params.g, tm->params.total * sizeof(float)) == 0, "two runs differ");
        }
        dlq_tmodel_destroy(tm);
    }
    free(g1);
    dlq_model_destroy(m);
}

int main(void) {
    run_case("full", DLQ_MODE_FULL, 0);
    run_case("full", DLQ_MODE_FULL, 1);
    run_case("lora", DLQ_MODE_LORA, 0);
    run_case("lora", DLQ_MODE_LORA, 1);
    determinism();
    return T_DONE();
}
