#include "train/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dlq_params_init(dlq_params *p) { memset(p, 0, sizeof *p); }

void dlq_params_free(dlq_params *p) {
    free(p->t);
    free(p->w);
    free(p->g);
    free(p->m);
    free(p->v);
    memset(p, 0, sizeof *p);
}

int dlq_params_add_group(dlq_params *p, const char *name, float lr_mult, float weight_decay) {
    if (p->n_groups >= DLQ_MAX_PGROUPS) return -1;
    dlq_pgroup *g = &p->groups[p->n_groups];
    snprintf(g->name, sizeof g->name, "%s", name);
    g->lr_mult = lr_mult;
    g->weight_decay = weight_decay;
    return p->n_groups++;
}

int dlq_params_add(dlq_params *p, const char *name, size_t n, int group, float **bind_w, float **bind_g, dlq_err *err) {
    if (p->w) return dlq_errf(err, DLQ_EINVAL, "params: '%s' registered after allocation", name);
    if (group < 0 || group >= p->n_groups) return dlq_errf(err, DLQ_EINVAL, "params: '%s': bad group %d", name, group);
    if (p->n == p->cap) {
        int nc = p->cap ? p->cap * 2 : 64;
        dlq_ptensor *nt = realloc(p->t, (size_t)nc * sizeof *nt);
        if (!nt) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
        p->t = nt;
        p->cap = nc;
    }
    dlq_ptensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n = n;
    t->off = p->total;
    t->group = group;
    t->bind_w = bind_w;
    t->bind_g = bind_g;
    p->total += (n + 15) & ~(size_t)15; /* 64-byte aligned starts */
    return DLQ_OK;
}

static float *alloc_floats(size_t n, dlq_err *err) {
    void *q = NULL;
    if (posix_memalign(&q, 64, (n ? n : 1) * sizeof(float))) {
        dlq_errf(err, DLQ_ENOMEM, "out of memory for %zu parameters (%.1f MiB)", n, n * 4.0 / 1048576);
        return NULL;
    }
    memset(q, 0, (n ? n : 1) * sizeof(float));
    return q;
}

int dlq_params_alloc(dlq_params *p, dlq_err *err) {
    if (!(p->w = alloc_floats(p->total, err)) || !(p->g = alloc_floats(p->total, err))) return DLQ_ENOMEM;
    for (int i = 0; i < p->n; i++) {
        if (p->t[i].bind_w) *p->t[i].bind_w = p->w + p->t[i].off;
        if (p->t[i].bind_g) *p->t[i].bind_g = p->g + p->t[i].off;
    }
    return DLQ_OK;
}

int dlq_params_alloc_optim(dlq_params *p, dlq_err *err) {
    if (p->m) return DLQ_OK;
    if (!(p->m = alloc_floats(p->total, err)) || !(p->v = alloc_floats(p->total, err))) return DLQ_ENOMEM;
    return DLQ_OK;
}

const dlq_ptensor *dlq_params_find(const dlq_params *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->t[i].name, name)) return &p->t[i];
    return NULL;
}

size_t dlq_params_trainable(const dlq_params *p) {
    size_t s = 0;
    for (int i = 0; i < p->n; i++)
        if (!p->t[i].frozen) s += p->t[i].n;
    return s;
}

void dlq_params_zero_grad(dlq_params *p) {
    if (p->g) memset(p->g, 0, p->total * sizeof(float));
}
