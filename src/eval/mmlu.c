/* MMLU from the Hendrycks CSVs: subjects and categories, CSV reader, lm-eval's
 * k-shot prompt, shots dropped while the request does not fit the context. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

/* subject -> category, as lm-eval's tasks/mmlu/_generate_configs.py (the
 * grouping of Hendrycks et al.'s categories.py) */
static const struct { const char *subject, *category; } SUBJ[] = {
    {"abstract_algebra", "stem"},
    {"anatomy", "stem"},
    {"astronomy", "stem"},
    {"business_ethics", "other"},
    {"clinical_knowledge", "other"},
    {"college_biology", "stem"},
    {"college_chemistry", "stem"},
    {"college_computer_science", "stem"},
    {"college_mathematics", "stem"},
    {"college_medicine", "other"},
    {"college_physics", "stem"},
    {"computer_security", "stem"},
    {"conceptual_physics", "stem"},
    {"econometrics", "social_sciences"},
    {"electrical_engineering", "stem"},
    {"elementary_mathematics", "stem"},
    {"formal_logic", "humanities"},
    {"global_facts", "other"},
    {"high_school_biology", "stem"},
    {"high_school_chemistry", "stem"},
    {"high_school_computer_science", "stem"},
    {"high_school_european_history", "humanities"},
    {"high_school_geography", "social_sciences"},
    {"high_school_government_and_politics", "social_sciences"},
    {"high_school_macroeconomics", "social_sciences"},
    {"high_school_mathematics", "stem"},
    {"high_school_microeconomics", "social_sciences"},
    {"high_school_physics", "stem"},
    {"high_school_psychology", "social_sciences"},
    {"high_school_statistics", "stem"},
    {"high_school_us_history", "humanities"},
    {"high_school_world_history", "humanities"},
    {"human_aging", "other"},
    {"human_sexuality", "social_sciences"},
    {"international_law", "humanities"},
    {"jurisprudence", "humanities"},
    {"logical_fallacies", "humanities"},
    {"machine_learning", "stem"},
    {"management", "other"},
    {"marketing", "other"},
    {"medical_genetics", "other"},
    {"miscellaneous", "other"},
    {"moral_disputes", "humanities"},
    {"moral_scenarios", "humanities"},
    {"nutrition", "other"},
    {"philosophy", "humanities"},
    {"prehistory", "humanities"},
    {"professional_accounting", "other"},
    {"professional_law", "humanities"},
    {"professional_medicine", "other"},
    {"professional_psychology", "social_sciences"},
    {"public_relations", "social_sciences"},
    {"security_studies", "social_sciences"},
    {"sociology", "social_sciences"},
    {"us_foreign_policy", "social_sciences"},
    {"virology", "other"},
    {"world_religions", "humanities"}
};
#define NSUBJ ((int)(sizeof SUBJ / sizeof SUBJ[0]))

int dlq_mmlu_n_subjects(void) { return NSUBJ; }
const char *dlq_mmlu_subject(int i) { return i >= 0 && i < NSUBJ ? SUBJ[i].subject : NULL; }
const char *dlq_mmlu_category(int i) { return i >= 0 && i < NSUBJ ? SUBJ[i].category : NULL; }
int dlq_mmlu_subject_index(const char *name) {
    for (int i = 0; i < NSUBJ; i++)
        if (!strcmp(name, SUBJ[i].subject)) return i;
    return -1;
}

void dlq_mmlu_free(dlq_mmlu_q *qs, int n) {
    if (!qs) return;
    for (int i = 0; i < n; i++) {
        free(qs[i].q);
        for (int j = 0; j < 4; j++) free(qs[i].a[j]);
    }
    free(qs);
}

/* One RFC 4180 field starting at *p; advances past it and its separator.
 * *end_rec = 1 when the record ends after it. NULL on an unterminated quote. */
static char *csv_field(const char **p, const char *end, int *end_rec) {
    const char *s = *p;
    size_t cap = 64, n = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    int quoted = s < end && *s == '"';
    if (quoted) s++;
    for (;;) {
        if (s >= end) {
            if (quoted) { free(out); return NULL; }
            *end_rec = 1;
            break;
        }
        char c = *s;
        if (quoted) {
            if (c == '"') {
                if (s + 1 < end && s[1] == '"') { c = '"'; s++; }
                else { quoted = 0; s++; continue; }
            }
        } else if (c == ',') { s++; *end_rec = 0; break; }
        else if (c == '\n' || c == '\r') {
            if (c == '\r' && s + 1 < end && s[1] == '\n') s++;
            s++;
            *end_rec = 1;
            break;
        }
        if (n + 2 > cap) {
            char *q = realloc(out, cap *= 2);
            if (!q) { free(out); return NULL; }
            out = q;
        }
        out[n++] = c;
        s++;
    }
    out[n] = 0;
    *p = s;
    return out;
}

int dlq_mmlu_read_csv(const char *path, dlq_mmlu_q **qs, int *nq, dlq_err *err) {
    *qs = NULL;
    *nq = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return dlq_errf(err, DLQ_EIO, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
    if (!buf || fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        fclose(f);
        free(buf);
        return dlq_errf(err, DLQ_EIO, "cannot read %s", path);
    }
    fclose(f);
    const char *p = buf, *end = buf + sz;
    int cap = 0, n = 0, rc = DLQ_OK, rec = 0;
    dlq_mmlu_q *v = NULL;
    while (p < end && !rc) {
        if (*p == '\n' || *p == '\r') { p++; continue; } /* blank line */
        rec++;
        char *fld[8] = {0};
        int nf = 0, er = 0;
        while (!er) {
            char *x = csv_field(&p, end, &er);
            if (!x) { rc = dlq_errf(err, DLQ_EFORMAT, "%s record %d: unterminated quoted field", path, rec); break; }
            if (nf < 8) fld[nf] = x; else free(x);
            nf++;
        }
        if (!rc && nf != 6)
            rc = dlq_errf(err, DLQ_EFORMAT, "%s record %d: %d fields, expected 6 (question, A, B, C, D, answer)", path,
                          rec, nf);
        int gold = -1;
        if (!rc) {
            const char *a = fld[5];
            if (strlen(a) == 1 && a[0] >= 'A' && a[0] <= 'D') gold = a[0] - 'A';
            else rc = dlq_errf(err, DLQ_EFORMAT, "%s record %d: answer \"%.20s\" is not A, B, C or D", path, rec, a);
        }
        if (!rc && n == cap) {
            cap = cap ? 2 * cap : 64;
            dlq_mmlu_q *q = realloc(v, (size_t)cap * sizeof *q);
            if (!q) rc = dlq_errf(err, DLQ_ENOMEM, "out of memory reading %s", path);
            else v = q;
        }
        if (!rc) {
            v[n].q = fld[0];
            for (int j = 0; j < 4; j++) v[n].a[j] = fld[j + 1];
            v[n].gold = gold;
            free(fld[5]);
            n++;
        } else
            for (int j = 0; j < 8 && j < nf; j++) free(fld[j]);
    }
    free(buf);
    if (!rc && n == 0) rc = dlq_errf(err, DLQ_EFORMAT, "%s has no questions", path);
    if (rc) { dlq_mmlu_free(v, n); return rc; }
    *qs = v;
    *nq = n;
    return DLQ_OK;
}

/* appends q.strip() "\nA. a\nB. b\nC. c\nD. d\nAnswer:" */
static size_t put_question(char *o, const dlq_mmlu_q *q) {
    const char *s = q->q, *e = s + strlen(s);
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v')) s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r' || e[-1] == '\f' || e[-1] == '\v')) e--;
    size_t n = 0;
    if (o) memcpy(o, s, (size_t)(e - s));
    n += (size_t)(e - s);
    for (int j = 0; j < 4; j++) {
        size_t k = strlen(q->a[j]);
        if (o) { o[n] = '\n'; o[n + 1] = (char)('A' + j); o[n + 2] = '.'; o[n + 3] = ' '; memcpy(o + n + 4, q->a[j], k); }
        n += 4 + k;
    }
    if (o) memcpy(o + n, "\nAnswer:", 8);
    return n + 8;
}

char *dlq_mmlu_prompt(const char *subject, const dlq_mmlu_q *dev, int k, const dlq_mmlu_q *q) {
    static const char H[] = "The following are multiple choice questions (with answers) about ";
    size_t ls = strlen(subject), n = sizeof H - 1 + ls + 3; /* ".\n\n" */
    for (int i = 0; i < k; i++) n += put_question(NULL, &dev[i]) + 4; /* " X\n\n" */
    n += put_question(NULL, q);
    char *o = malloc(n + 1);
    if (!o) return NULL;
    size_t p = 0;
    memcpy(o, H, sizeof H - 1);
    p += sizeof H - 1;
    for (size_t i = 0; i < ls; i++) o[p++] = subject[i] == '_' ? ' ' : subject[i];
    memcpy(o + p, ".\n\n", 3);
    p += 3;
    for (int i = 0; i < k; i++) {
        p += put_question(o + p, &dev[i]);
        o[p++] = ' ';
        o[p++] = (char)('A' + dev[i].gold);
        o[p++] = '\n';
        o[p++] = '\n';
    }
    p += put_question(o + p, q);
    o[p] = 0;
    return o;
}

/* does the request (prompt, " X") fit the model's input of n_ctx tokens? */
static int fits(const dlq_tokenizer *t, const char *prompt, int n_ctx, int *fit, dlq_err *err) {
    static const char *const L[4] = {" A", " B", " C", " D"};
    *fit = 1;
    for (int j = 0; j < 4 && *fit; j++) {
        int32_t *c, *k;
        int nc, nk;
        int rc = dlq_mc_encode_pair(t, prompt, L[j], &c, &nc, &k, &nk, err);
        if (rc) return rc;
        free(c);
        free(k);
        if (nc + nk - 1 > n_ctx) *fit = 0;
    }
    return DLQ_OK;
}

int dlq_mmlu_load(const char *dir, const char *split, const char *subjects, int shots, int limit,
                  const dlq_tokenizer *t, int n_ctx, dlq_mc_set *out, dlq_err *err) {
    snprintf(out->task, sizeof out->task, "mmlu");
    out->has_norm = 0;
    if (!split) split = "test";
    if (shots < 0) shots = 5;
    int rc = DLQ_OK;
    if (subjects) { /* validate the list first: a typo is an error, not an empty result */
        char *tmp = strdup(subjects), *save = NULL;
        for (char *s = strtok_r(tmp, ",", &save); s && !rc; s = strtok_r(NULL, ",", &save))
            if (dlq_mmlu_subject_index(s) < 0) rc = dlq_errf(err, DLQ_EINVAL, "unknown MMLU subject '%s'", s);
        free(tmp);
        if (rc) return rc;
    }
    for (int si = 0; si < NSUBJ && !rc; si++) {
        const char *sub = SUBJ[si].subject;
        if (subjects) {
            int found = 0;
            size_t ls = strlen(sub);
            for (const char *p = subjects; (p = strstr(p, sub)); p++)
                if ((p == subjects || p[-1] == ',') && (p[ls] == 0 || p[ls] == ',')) { found = 1; break; }
            if (!found) continue;
        }
        char path[2048];
        dlq_mmlu_q *dev = NULL, *qs = NULL;
        int nd = 0, nq = 0;
        snprintf(path, sizeof path, "%s/dev/%s_dev.csv", dir, sub);
        if (shots > 0 && (rc = dlq_mmlu_read_csv(path, &dev, &nd, err))) break;
        snprintf(path, sizeof path, "%s/%s/%s_%s.csv", dir, split, sub, split);
        if ((rc = dlq_mmlu_read_csv(path, &qs, &nq, err))) {
            dlq_mmlu_free(dev, nd);
            break;
        }
        if (shots > nd && shots > 0)
            rc = dlq_errf(err, DLQ_EINVAL, "mmlu %s: %d shots requested, the dev split has %d", sub, shots, nd);
        int nall = nq;
        if (limit > 0 && nq > limit) nq = limit;
        static const char *const LET[4] = {"A", "B", "C", "D"}, *const CONT[4] = {" A", " B", " C", " D"};
        for (int i = 0; i < nq && !rc; i++) {
            int k = shots;
            char *prompt = NULL;
            for (;;) {
                int fit;
                prompt = dlq_mmlu_prompt(sub, dev, k, &qs[i]);
                if (!prompt) { rc = dlq_errf(err, DLQ_ENOMEM, "out of memory"); break; }
                if ((rc = fits(t, prompt, n_ctx, &fit, err))) break;
                if (fit || k == 0) break;
                free(prompt);
                prompt = NULL;
                k--; /* drop the last example */
            }
            if (!rc) {
                const char *ctx[4] = {prompt, prompt, prompt, prompt};
                rc = dlq_mc_set_add(out, 4, ctx, CONT, LET, qs[i].gold, err);
                if (!rc) out->items[out->n - 1].subject = si, out->items[out->n - 1].shots = k;
            }
            if (rc) dlq_err_prefix(err, "mmlu %s question %d", sub, i);
            free(prompt);
        }
        dlq_mmlu_free(dev, nd);
        dlq_mmlu_free(qs, nall);
    }
    if (!rc && out->n == 0) rc = dlq_errf(err, DLQ_EINVAL, "mmlu: no questions selected");
    return rc;
}
