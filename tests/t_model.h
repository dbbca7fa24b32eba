/* Test helper over whole models (tests that include it link the library):
 * the same ids through two models' batched forward passes. */
#ifndef DLQ_TESTS_T_MODEL_H
#define DLQ_TESTS_T_MODEL_H

#include "model/forward.h"
#include "t.h"

/* Logits of ids[0..T) from models a and b into la, lb ([T][vocab] each);
 * returns max |la - lb| and sets *mag = max |lb| (NAN on a failure). */
static double t_logit_diff(const dlq_model *a, const dlq_model *b, const int32_t *ids, int T, float *la, float *lb,
                           double *mag) {
    dlq_err err = {0};
    dlq_state *sa = NULL, *sb = NULL;
    size_t n = (size_t)T * (size_t)a->cfg.vocab_size;
    double d = NAN;
    *mag = NAN;
    if (!dlq_state_create(&sa, a, 1, T, T, &err) && !dlq_state_create(&sb, b, 1, T, T, &err) &&
        !dlq_forward(a, sa, ids, 1, T, 0, la, 0, &err) && !dlq_forward(b, sb, ids, 1, T, 0, lb, 0, &err)) {
        d = t_maxabs(la, lb, n, NULL);
        *mag = 0;
        for (size_t i = 0; i < n; i++) *mag = fmax(*mag, fabs(lb[i]));
    } else {
        fprintf(stderr, "t_logit_diff: %s\n", err.msg);
    }
    dlq_state_destroy(sa);
    dlq_state_destroy(sb);
    return d;
}

#endif
