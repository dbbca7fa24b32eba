/* PEFT compatibility: a LoRA adapter written by `dlqat finetune` (committed in
 * tests/fixtures/peft/adapter, made by scripts/check_peft.py), merged at load
 * via dlq_load_opts.adapter_path, must give the logits that Hugging Face PEFT
 * (PeftModel.from_pretrained on the float32 base) computed for the same ids:
 * last position of each row (full vocabulary) and the first K vocabulary ids at
 * every position, within 1e-4. Also checks that the adapter matters (the base
 * model alone is far from PEFT's logits). SKIPs without models/english-mix-7M. */
#include <jansson.h>

#include "core/mapfile.h"
#include "model/forward.h"
#include "model/model.h"
#include "t.h"

#define FX "tests/fixtures/peft"
#define TOL 1e-4

static float *read_f32(const char *path, size_t n) {
    char *s = NULL;
    size_t len = 0;
    dlq_err err = {0};
    if (dlq_read_file(path, &s, &len, &err)) return NULL;
    if (len != n * sizeof(float)) { free(s); return NULL; }
    float *f = malloc(n * sizeof *f);
    memcpy(f, s, n * sizeof *f);
    free(s);
    return f;
}

/* logits [B*T, V] of the model at path (with adapter or NULL) */
static float *run_model(const char *path, const char *adapter, const int32_t *ids, int B, int T, int *V) {
    dlq_load_opts o;
    memset(&o, 0, sizeof o);
    o.adapter_path = adapter;
    dlq_model *m = NULL;
    dlq_err err = {0};
    int rc = dlq_model_load(&m, path, &o, &err);
    CHECK(rc == 0, "load %s (adapter %s): %s", path, adapter ? adapter : "none", err.msg);
    if (rc) return NULL;
    *V = m->cfg.vocab_size;
    dlq_state *s = NULL;
    rc = dlq_state_create(&s, m, B, T, T, &err);
    CHECK(rc == 0, "state: %s", err.msg);
    float *lg = NULL;
    if (!rc) {
        lg = malloc((size_t)B * T * *V * sizeof *lg);
        rc = dlq_forward(m, s, ids, B, T, 0, lg, 0, &err);
        CHECK(rc == 0, "forward: %s", err.msg);
        if (rc) { free(lg); lg = NULL; }
    }
    dlq_state_destroy(s);
    dlq_model_destroy(m);
    return lg;
}

int main(void) {
    json_error_t je;
    json_t *ref = json_load_file(FX "/ref.json", 0, &je);
    CHECK(ref != NULL, "%s/ref.json: %s", FX, je.text);
    if (!ref) return T_DONE();
    const char *model = json_string_value(json_object_get(ref, "model"));
    if (!model || access(model, F_OK)) {
        SKIP("base model %s not present", model ? model : "(none)");
        json_decref(ref);
        return T_DONE();
    }
    int B = (int)json_integer_value(json_object_get(ref, "B"));
    int T = (int)json_integer_value(json_object_get(ref, "T"));
    int Vr = (int)json_integer_value(json_object_get(ref, "vocab"));
    int K = (int)json_integer_value(json_object_get(ref, "head_k"));
    json_t *rows = json_object_get(ref, "input_ids");
    CHECK(B > 0 && T > 0 && K > 0 && K <= Vr && (int)json_array_size(rows) == B, "ref.json shapes");
    int32_t *ids = calloc((size_t)B * T, sizeof *ids);
    for (int b = 0; b < B; b++) {
        json_t *r = json_array_get(rows, (size_t)b);
        CHECK((int)json_array_size(r) == T, "row %d has %zu ids", b, json_array_size(r));
        for (int t = 0; t < T && t < (int)json_array_size(r); t++)
            ids[b * T + t] = (int32_t)json_integer_value(json_array_get(r, (size_t)t));
    }
    float *last = read_f32(FX "/logits_last.f32", (size_t)B * Vr);
    float *head = read_f32(FX "/logits_head.f32", (size_t)B * T * K);
    CHECK(last && head, "reference logits missing or of the wrong size");

    int V = 0;
    float *lg = last && head ? run_model(model, FX "/adapter", ids, B, T, &V) : NULL;
    if (lg) {
        CHECK(V == Vr, "vocab %d vs fixture %d", V, Vr);
        double dl = 0, dh = 0;
        for (int b = 0; b < B && V == Vr; b++) {
            double d = t_maxabs(lg + ((size_t)b * T + (T - 1)) * V, last + (size_t)b * V, (size_t)V, NULL);
            if (d > dl || d != d) dl = d;
            for (int t = 0; t < T; t++) {
                d = t_maxabs(lg + ((size_t)b * T + t) * V, head + ((size_t)b * T + t) * K, (size_t)K, NULL);
                if (d > dh || d != d) dh = d;
            }
        }
        printf("dlqat + adapter vs PEFT: last position max |diff| %.3g, first %d ids at every position %.3g\n", dl, K, dh);
        CHECK(dl <= TOL, "last-position logits differ from PEFT by %.3g (tol %g)", dl, TOL);
        CHECK(dh <= TOL, "logits (first %d ids) differ from PEFT by %.3g (tol %g)", K, dh, TOL);
        free(lg);

        /* the adapter must matter: without it the logits are far from PEFT's */
        float *b0 = run_model(model, NULL, ids, B, T, &V);
        if (b0) {
            double db = 0;
            for (int b = 0; b < B; b++) {
                double d = t_maxabs(b0 + ((size_t)b * T + (T - 1)) * V, last + (size_t)b * V, (size_t)V, NULL);
                if (d > db) db = d;
            }
            printf("base model (no adapter) vs PEFT: %.3g\n", db);
            CHECK(db > 100 * TOL, "the adapter changes the logits by only %.3g", db);
            free(b0);
        }
    }
    free(last);
    free(head);
    free(ids);
    json_decref(ref);
    return T_DONE();
}
