#include "train/optim.h"

#include <math.h>
#include <string.h>

void dlq_adamw_init(dlq_adamw *o, float beta1, float beta2, float eps) {
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->step = 0;
}

void dlq_adamw_step(dlq_adamw *o, dlq_params *p, float lr) {
    o->step++;
    double bc1 = 1.0 - pow(o->beta1, (double)o->step), bc2 = 1.0 - pow(o->beta2, (double)o->step);
    float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
    for (int i = 0; i < p->n; i++) {
        const dlq_ptensor *t = &p->t[i];
        if (t->frozen) continue;
        const dlq_pgroup *g = &p->groups[t->group];
        float glr = lr * g->lr_mult, wd = g->weight_decay;
        float step_size = (float)(glr / bc1);
        float bc2_sqrt = (float)sqrt(bc2);
        float *w = p->w + t->off, *gr = p->g + t->off, *m = p->m + t->off, *v = p->v + t->off;
        int64_t n = (int64_t)t->n;
        #pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t j = 0; j < n; j++) {
            /* torch.optim.AdamW (non-amsgrad, foreach=False) order of operations */
            if (wd != 0) w[j] *= 1.0f - glr * wd;
            m[j] = b1 * m[j] + (1.0f - b1) * gr[j];
            v[j] = b2 * v[j] + (1.0f - b2) * gr[j] * gr[j];
            float denom = sqrtf(v[j]) / bc2_sqrt + eps;
            w[j] -= step_size * (m[j] / denom);
        }
    }
}

double dlq_grad_norm(const dlq_params *p) {
    double s = 0;
    for (int i = 0; i < p->n; i++) {
        const dlq_ptensor *t = &p->t[i];
        if (t->frozen) continue;
        const float *g = p->g + t->off;
        double ts = 0;
        for (size_t j = 0; j < t->n; j++) ts += (double)g[j] * g[j];
        s += ts;
    }
    return sqrt(s);
}

double dlq_clip_grad_norm(dlq_params *p, double max_norm) {
    double norm = dlq_grad_norm(p);
    if (max_norm > 0 && norm > max_norm) {
        float c = (float)(max_norm / (norm + 1e-6));
        for (int i = 0; i < p->n; i++) {
            const dlq_ptensor *t = &p->t[i];
            if (t->frozen) continue;
            float *g = p->g + t->off;
            for (size_t j = 0; j < t->n; j++) g[j] *= c;
        }
    }
    return norm;
}

float dlq_schedule_lr(const dlq_schedule *s, int64_t step) {
    if (s->warmup > 0 && step < s->warmup) return s->lr * (float)step / (float)s->warmup;
    if (s->kind == DLQ_SCHED_CONSTANT || s->total <= s->warmup) return s->lr;
    double prog = (double)(step - s->warmup) / (double)(s->total - s->warmup);
    if (prog > 1) prog = 1;
    double f = s->kind == DLQ_SCHED_LINEAR ? 1.0 - prog : 0.5 * (1.0 + cos(M_PI * prog));
    return (float)(s->lr * (s->min_ratio + (1.0 - s->min_ratio) * f));
}

int dlq_schedule_parse(dlq_schedule *s, const char *name) {
    if (!strcmp(name, "constant")) s->kind = DLQ_SCHED_CONSTANT;
    else if (!strcmp(name, "linear")) s->kind = DLQ_SCHED_LINEAR;
    else if (!strcmp(name, "cosine")) s->kind = DLQ_SCHED_COSINE;
    else return -1;
    return 0;
}
