/* Distillation loss in the training model (--loss kl / ce+kl): the teacher is
 * the frozen base model. Checks: a student equal to its teacher has zero KL
 * and zero gradient; the KL gradient of LoRA parameters matches central
 * finite differences of the model's own loss; ce+kl gradients are the sum of
 * the ce and kl gradients; quantized (DL-QAT) students train with it. */
#include "train/tmodel.h"
#include "t.h"

#define B_ 2
#define T_ 9

static void make_batch(int32_t *tok, int32_t *tgt, int V) {
    for (int i = 0; i < B_ * T_; i++) {
        tok[i] = (i * 37 + 11) % V;
        tgt[i] = i % T_ == T_ - 1 ? -1 : (i * 53 + 3) % V;
    }
}

static dlq_tmodel *make(const dlq_model *m, dlq_train_mode mode, dlq_loss_kind loss) {
    dlq_tmodel_opts o = {.mode = mode, .B = B_, .T = T_, .seed = 3, .lora_r = 4, .lora_alpha = 8, .targets = 0x7f,
                         .loss = loss, .qspec = {3, 16}};
    dlq_tmodel *tm = NULL;
    dlq_err err = {0};
    CHECK(dlq_tmodel_create(&tm, m, &o, &err) == 0, "create: %s", err.msg);
    return tm;
}

static void perturb_B(dlq_tmodel *tm) {
    for (int l = 0; l < tm->cfg.n_layers; l++)
        for (int p = 0; p < DLQ_N_PROJ; p++) {
            dlq_tlinear *L = &tm->layers[l].p[p];
            if (!L->B) continue;
            for (int64_t j = 0; j < L->out * L->r; j++) L->B[j] = 0.05f * (float)((j * 7 + l + 3 * p) % 13 - 6);
        }
}

static double step(dlq_tmodel *tm, const int32_t *tok, const int32_t *tgt) {
    double ls = 0;
    int64_t nv = 0;
    dlq_err err = {0};
    dlq_params_zero_grad(&tm->params);
    CHECK(dlq_tmodel_step(tm, tok, tgt, 1.0f, &ls, &nv, &err) == 0, "step: %s", err.msg);
    return nv ? ls / (double)nv : 0;
}

int main(void) {
    dlq_model *m;
    dlq_err err = {0};
    if (dlq_model_load(&m, "tests/fixtures/hf/llama", NULL, &err)) { CHECK(0, "%s", err.msg); return T_DONE(); }
    int V = m->cfg.vocab_size;
    int32_t tok[B_ * T_], tgt[B_ * T_];
    make_batch(tok, tgt, V);

    dlq_loss_kind k;
    CHECK(dlq_loss_parse("kl", &k) == 0 && k == DLQ_LOSS_KL, "parse kl");
    CHECK(dlq_loss_parse("ce+kl", &k) == 0 && k == DLQ_LOSS_CE_KL, "parse ce+kl");
    CHECK(dlq_loss_parse("mse", &k) != 0, "parse rejects mse");

    /* 1. LoRA at init (B = 0): student == teacher */
    dlq_tmodel *tm = make(m, DLQ_MODE_LORA, DLQ_LOSS_KL);
    if (!tm) return T_DONE();
    double kl0 = step(tm, tok, tgt), gmax = 0;
    for (size_t i = 0; i < tm->params.total; i++) gmax = fmax(gmax, fabs(tm->params.g[i]));
    CHECK(fabs(kl0) < 1e-7, "KL of the untouched student is %.3g (expected ~0)", kl0);
    CHECK(gmax < 1e-5, "KL gradient of the untouched student is %.3g (expected ~0)", gmax);
    printf("student == teacher: KL %.3g, max |grad| %.3g\n", kl0, gmax);

    /* 2. perturbed LoRA: gradient vs central differences of the model loss */
    perturb_B(tm);
    double kl1 = step(tm, tok, tgt);
    CHECK(kl1 > 1e-4, "perturbed student has KL %.3g (expected > 0)", kl1);
    float *g = malloc(tm->params.total * sizeof(float));
    memcpy(g, tm->params.g, tm->params.total * sizeof(float));
    /* a spread of B and A entries of the first layers' projections */
    int checked = 0;
    double worst = 0;
    for (int p = 0; p < DLQ_N_PROJ; p++) {
        dlq_tlinear *L = &tm->layers[p % tm->cfg.n_layers].p[p];
        float *ws[2] = {L->B, L->A};
        float *gs[2] = {L->gB, L->gA};
        int64_t ns[2] = {L->out * L->r, L->r * L->in};
        for (int w = 0; w < 2; w++)
            for (int64_t j = 0; j < ns[w]; j += ns[w] / 3 + 1) {
                float s = ws[w][j];
                const float h = 1e-2f;
                ws[w][j] = s + h;
                double lp = step(tm, tok, tgt);
                ws[w][j] = s - h;
                double lm = step(tm, tok, tgt);
                ws[w][j] = s;
                double fd = (lp - lm) / (2.0 * h), an = g[gs[w] + j - tm->params.g];
                /* float forward: FD noise ~1e-6 / h; relative to the gradient scale */
                double e = fabs(fd - an) / fmax(1e-3, fabs(fd));
                worst = fmax(worst, e);
                checked++;
            }
    }
    CHECK(checked >= 14 && worst < 2e-2, "KL LoRA gradient vs finite differences: worst rel err %.3g over %d", worst, checked);
    printf("KL LoRA gradient vs finite differences: worst rel err %.3g over %d entries\n", worst, checked);
    dlq_tmodel_destroy(tm);
    free(g);

    /* 3. ce+kl = ce + kl (gradients add up) on a quantized student */
    dlq_tmodel *tc = make(m, DLQ_MODE_QUANT, DLQ_LOSS_CE), *tk = make(m, DLQ_MODE_QUANT, DLQ_LOSS_KL),
               *tb = make(m, DLQ_MODE_QUANT, DLQ_LOSS_CE_KL);
    if (tc && tk && tb) {
        dlq_tmodel *all[3] = {tc, tk, tb};
        double L[3];
        for (int i = 0; i < 3; i++) {
            dlq_tmodel_set_trainable(all[i], DLQ_TRAIN_SB | DLQ_TRAIN_M | DLQ_TRAIN_AB);
            perturb_B(all[i]);
            L[i] = step(all[i], tok, tgt);
        }
        double md = 0, mg = 0;
        for (size_t i = 0; i < tb->params.total; i++) {
            md = fmax(md, fabs((double)tb->params.g[i] - tc->params.g[i] - tk->params.g[i]));
            mg = fmax(mg, fabs(tb->params.g[i]));
        }
        CHECK(fabs(L[2] - L[0] - L[1]) < 1e-6 * L[2], "ce+kl loss %.9g != ce %.9g + kl %.9g", L[2], L[0], L[1]);
        CHECK(md < 1e-5 * mg, "ce+kl gradient differs from ce + kl by %.3g (max |g| %.3g)", md, mg);
        CHECK(L[1] > 1e-4, "quantized student: KL %.3g should be > 0", L[1]);
        printf("W3 g16 student: ce %.6f, kl %.6f, ce+kl %.6f; gradient sum error %.3g\n", L[0], L[1], L[2], md / mg);
        /* validation stays cross-entropy */
        double e1, e2;
        int64_t n1, n2;
        dlq_tmodel_eval(tk, tok, tgt, &e1, &n1, &err);
        dlq_tmodel_eval(tc, tok, tgt, &e2, &n2, &err);
        CHECK(e1 == e2 && n1 == n2, "eval of the kl model (%.9g) is not the same cross-entropy as the ce model (%.9g)", e1, e2);
    }
    dlq_tmodel_destroy(tc);
    dlq_tmodel_destroy(tk);
    dlq_tmodel_destroy(tb);
    dlq_model_destroy(m);
    return T_DONE();
}
