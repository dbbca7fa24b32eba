/* Multiple-choice task readers (LLM-Adapters instruction text, lm-eval
 * native JSON fields) and lm-eval 0.4.x's per-task prompt formats. */
#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/eval.h"

static const char *const TASKS[] = {"piqa",       "arc_easy",   "arc_challenge", "boolq", "openbookqa",
                                    "winogrande", "social_iqa", "hellaswag",     NULL};

const char *const *dlq_mc_task_names(void) { return TASKS; }

const char *dlq_mc_task_canonical(const char *name) {
    static const struct { const char *alias, *name; } A[] = {
        {"social_i_qa", "social_iqa"}, {"siqa", "social_iqa"},       {"arc-e", "arc_easy"},
        {"arc-c", "arc_challenge"},    {"obqa", "openbookqa"},       {"arc_e", "arc_easy"},
        {"arc_c", "arc_challenge"},    {"openbook_qa", "openbookqa"}};
    for (int i = 0; TASKS[i]; i++)
        if (!strcmp(name, TASKS[i])) return TASKS[i];
    for (size_t i = 0; i < sizeof A / sizeof A[0]; i++)
        if (!strcmp(name, A[i].alias)) return A[i].name;
    return NULL;
}

/* ---- small string helpers ---- */
static char *dupn(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}
static char *sdup(const char *s) { return dupn(s, strlen(s)); }

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
    va_list ap, aq;
    va_start(ap, f);
    va_copy(aq, ap);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) vsnprintf(s, (size_t)n + 1, f, aq);
    va_end(aq);
    return s;
}

static const char *find_last(const char *hay, const char *needle) {
    const char *last = NULL, *p = hay;
    while ((p = strstr(p, needle))) last = p++;
    return last;
}

static int is_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* Python str.strip() on ASCII whitespace. */
static char *strip_dup(const char *s) {
    size_t a = 0, b = strlen(s);
    while (a < b && is_space((unsigned char)s[a])) a++;
    while (b > a && is_space((unsigned char)s[b - 1])) b--;
    return dupn(s + a, b - a);
}

int64_t dlq_utf8_len(const char *s) {
    int64_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) n += (*p & 0xC0) != 0x80;
    return n;
}

void dlq_mc_doc_free(dlq_mc_doc *d) {
    if (!d) return;
    free(d->question);
    free(d->passage);
    free(d->extra);
    for (int i = 0; i < 8; i++) free(d->choices[i]);
    memset(d, 0, sizeof *d);
}

void dlq_mc_set_free(dlq_mc_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        dlq_mc_item *it = &s->items[i];
        for (int j = 0; j < it->n; j++) {
            free(it->ctx[j]);
            free(it->cont[j]);
            free(it->choice[j]);
        }
        free(it->ctx);
        free(it->cont);
        free(it->choice);
    }
    free(s->items);
    s->items = NULL;
    s->n = s->cap = 0;
}

int dlq_mc_set_add(dlq_mc_set *s, int n, const char *const *ctx, const char *const *cont,
                   const char *const *choice, int gold, dlq_err *err) {
    if (n < 1 || gold < 0 || gold >= n)
        return dlq_errf(err, DLQ_EINVAL, "item with %d choices and gold %d", n, gold);
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        dlq_mc_item *p = realloc(s->items, (size_t)cap * sizeof *p);
        if (!p) return dlq_errf(err, DLQ_ENOMEM, "out of memory for items");
        s->items = p;
        s->cap = cap;
    }
    dlq_mc_item *it = &s->items[s->n];
    memset(it, 0, sizeof *it);
    it->ctx = calloc((size_t)n, sizeof(char *));
    it->cont = calloc((size_t)n, sizeof(char *));
    it->choice = calloc((size_t)n, sizeof(char *));
    it->n = n;
    it->gold = gold;
    it->subject = -1;
    s->n++; /* owned from here: freed by dlq_mc_set_free on any failure */
    if (!it->ctx || !it->cont || !it->choice) return dlq_errf(err, DLQ_ENOMEM, "out of memory for items");
    for (int j = 0; j < n; j++) {
        it->ctx[j] = sdup(ctx[j]);
        it->cont[j] = sdup(cont[j]);
        it->choice[j] = sdup(choice[j]);
        if (!it->ctx[j] || !it->cont[j] || !it->choice[j]) return dlq_errf(err, DLQ_ENOMEM, "out of memory for items");
    }
    return DLQ_OK;
}

/* ---- LLM-Adapters instruction text ---- */
#define PFX_CHOOSE "Please choose the correct answer to the question: "
#define PFX_PIQA "Please choose the correct solution to the question: "
#define PFX_BOOLQ "Please answer the following question with true or false, question: "
#define PFX_WINO "Please choose the correct answer to fill in the blank to complete the given sentence: "

static int starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

/* "<word><k>" with k in 1..max -> k-1, else -1 */
static int parse_label(const char *ans, const char *word, int max) {
    size_t w = strlen(word);
    if (strncmp(ans, word, w)) return -1;
    char *end;
    long k = strtol(ans + w, &end, 10);
    if (end == ans + w || *end || k < 1 || k > max) return -1;
    return (int)k - 1;
}

static int lla_err(dlq_err *err, const char *task, const char *what, const char *text) {
    return dlq_errf(err, DLQ_EFORMAT, "%s item does not parse: %s (instruction starts \"%.60s\")", task, what, text);
}

int dlq_mc_parse_llm_adapters(const char *task, const char *ins, const char *answer, dlq_mc_doc *d, dlq_err *err) {
    memset(d, 0, sizeof *d);
    const char *t = dlq_mc_task_canonical(task);
    if (!t) return dlq_errf(err, DLQ_EINVAL, "unknown task '%s'", task);
    if (!ins || !answer) return lla_err(err, t, "no instruction/answer text", ins ? ins : "");
    int rc = DLQ_OK;
    if (!strcmp(t, "piqa")) {
        if (!starts(ins, PFX_PIQA)) return lla_err(err, t, "missing \"" PFX_PIQA "\"", ins);
        const char *q = ins + strlen(PFX_PIQA);
        const char *s1 = strstr(q, "\n\nSolution1: ");
        const char *s2 = s1 ? strstr(s1 + 13, "\n\nSolution2: ") : NULL;
        const char *f = find_last(ins, "\n\nAnswer format: solution1/solution2");
        if (!s1 || !s2 || !f || f < s2 || strcmp(f, "\n\nAnswer format: solution1/solution2"))
            return lla_err(err, t, "expected \"\\n\\nSolution1: ..\\n\\nSolution2: ..\\n\\nAnswer format: solution1/solution2\"", ins);
        d->question = dupn(q, (size_t)(s1 - q));
        d->choices[0] = dupn(s1 + 13, (size_t)(s2 - s1 - 13));
        d->choices[1] = dupn(s2 + 13, (size_t)(f - s2 - 13));
        d->n_choices = 2;
        d->gold = parse_label(answer, "solution", 2);
    } else if (!strcmp(t, "boolq")) {
        if (!starts(ins, PFX_BOOLQ)) return lla_err(err, t, "missing \"" PFX_BOOLQ "\"", ins);
        const char *q = ins + strlen(PFX_BOOLQ);
        const char *f = find_last(q, "\n\nAnswer format: true/false");
        if (!f || strcmp(f, "\n\nAnswer format: true/false"))
            return lla_err(err, t, "expected the text to end with \"\\n\\nAnswer format: true/false\"", ins);
        /* LLM-Adapters appended "?" to the question; lm-eval's template adds it */
        size_t n = (size_t)(f - q);
        if (n && q[n - 1] == '?') n--;
        d->question = dupn(q, n);
        d->passage = sdup(""); /* this format drops BoolQ's passage */
        d->choices[0] = sdup("no");
        d->choices[1] = sdup("yes");
        d->n_choices = 2;
        d->gold = !strcmp(answer, "true") ? 1 : !strcmp(answer, "false") ? 0 : -1;
    } else if (!strcmp(t, "winogrande")) {
        if (!starts(ins, PFX_WINO)) return lla_err(err, t, "missing \"" PFX_WINO "\"", ins);
        const char *q = ins + strlen(PFX_WINO);
        const char *o1 = strstr(q, "\n\nOption1: ");
        const char *o2 = o1 ? strstr(o1 + 11, " Option2: ") : NULL;
        const char *f = find_last(ins, " Answer format: option1/option2");
        if (!o1 || !o2 || !f || f < o2 || strcmp(f, " Answer format: option1/option2"))
            return lla_err(err, t, "expected \"\\n\\nOption1: .. Option2: .. Answer format: option1/option2\"", ins);
        d->question = dupn(q, (size_t)(o1 - q));
        d->choices[0] = dupn(o1 + 11, (size_t)(o2 - o1 - 11));
        d->choices[1] = dupn(o2 + 10, (size_t)(f - o2 - 10));
        d->n_choices = 2;
        d->gold = parse_label(answer, "option", 2);
        if (d->question && !strchr(d->question, '_')) {
            dlq_mc_doc_free(d);
            return lla_err(err, t, "the sentence has no blank '_'", ins);
        }
    } else if (!strcmp(t, "hellaswag")) {
        return dlq_errf(err, DLQ_EUNSUP, "hellaswag has no LLM-Adapters format; use lm-eval's native JSONL");
    } else { /* arc_easy, arc_challenge, openbookqa, social_iqa */
        if (!starts(ins, PFX_CHOOSE)) return lla_err(err, t, "missing \"" PFX_CHOOSE "\"", ins);
        const char *q = ins + strlen(PFX_CHOOSE);
        const char *f = find_last(ins, "\n\nAnswer format: ");
        if (!f) return lla_err(err, t, "no \"\\n\\nAnswer format: \"", ins);
        /* the format line "answer1/answer2/.../answerN" gives N */
        int n = 0;
        const char *p = f + 17;
        for (;;) {
            char want[32];
            snprintf(want, sizeof want, "answer%d", n + 1);
            if (!starts(p, want)) break;
            p += strlen(want);
            n++;
            if (*p == '/') p++;
            else break;
        }
        if (n < 2 || n > 8 || *p) return lla_err(err, t, "the answer format is not \"answer1/answer2/...\"", ins);
        const char *a = strstr(q, "\n\nAnswer1: ");
        if (!a || a > f) return lla_err(err, t, "no \"\\n\\nAnswer1: \"", ins);
        d->question = dupn(q, (size_t)(a - q));
        const char *start = a + 11;
        for (int k = 1; k <= n; k++) {
            const char *end = f;
            char want[32];
            snprintf(want, sizeof want, " Answer%d: ", k + 1);
            if (k < n) {
                end = strstr(start, want);
                if (!end || end > f) {
                    dlq_mc_doc_free(d);
                    char what[64];
                    snprintf(what, sizeof what, "no \"Answer%d: \" before the answer format", k + 1);
                    return lla_err(err, t, what, ins);
                }
            }
            d->choices[k - 1] = dupn(start, (size_t)(end - start));
            if (k < n) start = end + strlen(want);
        }
        d->n_choices = n;
        d->gold = parse_label(answer, "answer", n);
    }
    if (d->gold < 0) {
        dlq_mc_doc_free(d);
        return dlq_errf(err, DLQ_EFORMAT, "%s item: answer \"%.40s\" is not one of the choices", t, answer);
    }
    if (!d->question) rc = dlq_errf(err, DLQ_ENOMEM, "out of memory");
    for (int i = 0; i < d->n_choices && !rc; i++)
        if (!d->choices[i]) rc = dlq_errf(err, DLQ_ENOMEM, "out of memory");
    if (rc) dlq_mc_doc_free(d);
    return rc;
}

/* ---- lm-eval native fields ---- */
static const char *jstr(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* integer label given as a number, a bool or a digit string */
static int jint(json_t *o, const char *k, long *out) {
    json_t *v = json_object_get(o, k);
    if (json_is_integer(v)) { *out = (long)json_integer_value(v); return 1; }
    if (json_is_boolean(v)) { *out = json_is_true(v); return 1; }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        long x = strtol(s, &end, 10);
        if (end != s && !*end) { *out = x; return 1; }
    }
    return 0;
}

static int native_err(dlq_err *err, const char *task, const char *what) {
    return dlq_errf(err, DLQ_EFORMAT, "%s item: %s", task, what);
}

/* choices {text: [...], label: [...]} + answerKey (arc, openbookqa) */
static int native_choices(json_t *o, const char *task, dlq_mc_doc *d, dlq_err *err) {
    json_t *c = json_object_get(o, "choices");
    json_t *txt = json_object_get(c, "text"), *lab = json_object_get(c, "label");
    const char *key = jstr(o, "answerKey");
    if (!json_is_array(txt) || !json_is_array(lab) || !key || json_array_size(txt) != json_array_size(lab))
        return native_err(err, task, "needs choices.text[], choices.label[] of equal length and answerKey");
    size_t n = json_array_size(txt);
    if (n < 2 || n > 8) return native_err(err, task, "needs 2..8 choices");
    while (*key == ' ') key++; /* openbookqa: answerKey.lstrip() */
    d->gold = -1;
    for (size_t i = 0; i < n; i++) {
        json_t *ti = json_array_get(txt, i), *li = json_array_get(lab, i);
        if (!json_is_string(ti) || !json_is_string(li)) return native_err(err, task, "choices must be strings");
        d->choices[i] = sdup(json_string_value(ti));
        if (d->gold < 0 && !strcmp(json_string_value(li), key)) d->gold = (int)i;
    }
    d->n_choices = (int)n;
    if (d->gold < 0) return native_err(err, task, "answerKey is not one of choices.label");
    return DLQ_OK;
}

int dlq_mc_parse_native(const char *task, const char *json_text, dlq_mc_doc *d, dlq_err *err) {
    memset(d, 0, sizeof *d);
    const char *t = dlq_mc_task_canonical(task);
    if (!t) return dlq_errf(err, DLQ_EINVAL, "unknown task '%s'", task);
    json_error_t je;
    json_t *o = json_loads(json_text, 0, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return dlq_errf(err, DLQ_EFORMAT, "%s item is not a JSON object (%s)", t, je.text);
    }
    int rc = DLQ_OK;
    long lab;
    if (!strcmp(t, "piqa")) {
        const char *g = jstr(o, "goal"), *a = jstr(o, "sol1"), *b = jstr(o, "sol2");
        if (!g || !a || !b || !jint(o, "label", &lab) || lab < 0 || lab > 1)
            rc = native_err(err, t, "needs string goal, sol1, sol2 and label 0/1");
        else {
            d->question = sdup(g), d->choices[0] = sdup(a), d->choices[1] = sdup(b);
            d->n_choices = 2, d->gold = (int)lab;
        }
    } else if (!strcmp(t, "arc_easy") || !strcmp(t, "arc_challenge") || !strcmp(t, "openbookqa")) {
        const char *q = jstr(o, strcmp(t, "openbookqa") ? "question" : "question_stem");
        if (!q) rc = native_err(err, t, strcmp(t, "openbookqa") ? "needs a string question" : "needs a string question_stem");
        else {
            d->question = sdup(q);
            rc = native_choices(o, t, d, err);
        }
    } else if (!strcmp(t, "boolq")) {
        const char *p = jstr(o, "passage"), *q = jstr(o, "question");
        if (!p || !q || !jint(o, "label", &lab) || lab < 0 || lab > 1)
            rc = native_err(err, t, "needs string passage, question and label 0/1 (or false/true)");
        else {
            d->passage = sdup(p), d->question = sdup(q), d->choices[0] = sdup("no"), d->choices[1] = sdup("yes");
            d->n_choices = 2, d->gold = (int)lab;
        }
    } else if (!strcmp(t, "winogrande")) {
        const char *s = jstr(o, "sentence"), *a = jstr(o, "option1"), *b = jstr(o, "option2");
        if (!s || !a || !b || !jint(o, "answer", &lab) || lab < 1 || lab > 2)
            rc = native_err(err, t, "needs string sentence, option1, option2 and answer \"1\"/\"2\"");
        else if (!strchr(s, '_')) rc = native_err(err, t, "the sentence has no blank '_'");
        else {
            d->question = sdup(s), d->choices[0] = sdup(a), d->choices[1] = sdup(b);
            d->n_choices = 2, d->gold = (int)lab - 1;
        }
    } else if (!strcmp(t, "social_iqa")) {
        const char *c = jstr(o, "context"), *q = jstr(o, "question");
        const char *ab[3] = {jstr(o, "answerA"), jstr(o, "answerB"), jstr(o, "answerC")};
        if (!c || !q || !ab[0] || !ab[1] || !ab[2] || !jint(o, "label", &lab) || lab < 1 || lab > 3)
            rc = native_err(err, t, "needs string context, question, answerA..C and label \"1\"..\"3\"");
        else {
            d->question = sdup(c), d->extra = sdup(q);
            for (int i = 0; i < 3; i++) d->choices[i] = sdup(ab[i]);
            d->n_choices = 3, d->gold = (int)lab - 1;
        }
    } else { /* hellaswag */
        const char *al = jstr(o, "activity_label"), *ca = jstr(o, "ctx_a"), *cb = jstr(o, "ctx_b");
        json_t *e = json_object_get(o, "endings");
        size_t n = json_array_size(e);
        if (!al || !ca || !cb || !json_is_array(e) || n < 2 || n > 8 || !jint(o, "label", &lab) || lab < 0 ||
            lab >= (long)n)
            rc = native_err(err, t, "needs string activity_label, ctx_a, ctx_b, endings[2..8] and label");
        else {
            d->question = sdup(al), d->passage = sdup(ca), d->extra = sdup(cb);
            for (size_t i = 0; i < n && !rc; i++) {
                const char *s = json_string_value(json_array_get(e, i));
                if (!s) rc = native_err(err, t, "endings must be strings");
                else d->choices[i] = sdup(s);
            }
            d->n_choices = (int)n, d->gold = (int)lab;
        }
    }
    json_decref(o);
    if (rc) dlq_mc_doc_free(d);
    return rc;
}

/* ---- prompt formats (lm-eval 0.4.x task YAMLs) ---- */

/* hellaswag utils.preprocess: strip; " [title]" -> ". "; drop "[...]"
 * (regex \[.*?\], '.' not matching newlines); "  " -> " " (one pass). */
static char *hellaswag_preprocess(const char *in) {
    char *s = strip_dup(in);
    if (!s) return NULL;
    size_t n = strlen(s);
    char *a = malloc(2 * n + 1), *b = malloc(2 * n + 1);
    if (!a || !b) { free(s); free(a); free(b); return NULL; }
    size_t k = 0;
    for (size_t i = 0; i < n;) { /* " [title]" -> ". " */
        if (!strncmp(s + i, " [title]", 8)) { a[k++] = '.'; a[k++] = ' '; i += 8; }
        else a[k++] = s[i++];
    }
    a[k] = 0;
    n = k, k = 0;
    for (size_t i = 0; i < n;) {
        if (a[i] == '[') {
            size_t j = i + 1;
            while (j < n && a[j] != ']' && a[j] != '\n') j++;
            if (j < n && a[j] == ']') { i = j + 1; continue; }
        }
        b[k++] = a[i++];
    }
    b[k] = 0;
    n = k, k = 0;
    for (size_t i = 0; i < n;) {
        if (b[i] == ' ' && i + 1 < n && b[i + 1] == ' ') { a[k++] = ' '; i += 2; }
        else a[k++] = b[i++];
    }
    a[k] = 0;
    free(s);
    free(b);
    return a;
}

/* Python str.capitalize() for ASCII letters (non-ASCII bytes unchanged). */
static char *capitalize(const char *in) {
    char *s = sdup(in);
    if (!s) return NULL;
    for (size_t i = 0; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 128) s[i] = (char)(i == 0 ? toupper(c) : tolower(c));
    }
    return s;
}

int dlq_mc_format(const char *task, const dlq_mc_doc *d, dlq_mc_set *out, dlq_err *err) {
    const char *t = dlq_mc_task_canonical(task);
    if (!t) return dlq_errf(err, DLQ_EINVAL, "unknown task '%s'", task);
    int n = d->n_choices;
    if (n < 2 || n > 8 || !d->question) return dlq_errf(err, DLQ_EINVAL, "%s: document has %d choices", t, n);
    char *ctx[8] = {0}, *cont[8] = {0}, *choice[8] = {0};
    char *shared = NULL;
    int rc = DLQ_OK;
    out->has_norm = 1;
    if (!strcmp(t, "winogrande")) {
        /* partial scoring: context = sentence up to the blank + option; the
         * continuation = " " + the rest after the blank, stripped */
        out->has_norm = 0;
        const char *u = strchr(d->question, '_');
        if (!u) return dlq_errf(err, DLQ_EFORMAT, "winogrande: the sentence has no blank '_'");
        char *rest = strip_dup(u + 1);
        for (int i = 0; i < n; i++) {
            ctx[i] = fmt("%.*s%s", (int)(u - d->question), d->question, d->choices[i]);
            cont[i] = rest ? fmt(" %s", rest) : NULL;
            choice[i] = ctx[i] ? sdup(ctx[i]) : NULL;
        }
        free(rest);
    } else if (!strcmp(t, "hellaswag")) {
        char *cb = capitalize(d->extra ? d->extra : "");
        char *raw = cb ? fmt("%s: %s %s", d->question, d->passage ? d->passage : "", cb) : NULL;
        shared = raw ? hellaswag_preprocess(raw) : NULL;
        free(cb);
        free(raw);
        for (int i = 0; i < n; i++) choice[i] = hellaswag_preprocess(d->choices[i]);
    } else {
        if (!strcmp(t, "piqa") || !strcmp(t, "arc_easy") || !strcmp(t, "arc_challenge"))
            shared = fmt("Question: %s\nAnswer:", d->question);
        else if (!strcmp(t, "boolq")) {
            out->has_norm = 0;
            shared = fmt("%s\nQuestion: %s?\nAnswer:", d->passage ? d->passage : "", d->question);
        } else if (!strcmp(t, "openbookqa"))
            shared = sdup(d->question);
        else { /* social_iqa: "Q: {context} {question}\nA:" */
            out->has_norm = 0;
            shared = d->extra ? fmt("Q: %s %s\nA:", d->question, d->extra) : fmt("Q: %s\nA:", d->question);
        }
        for (int i = 0; i < n; i++) choice[i] = sdup(d->choices[i]);
    }
    if (shared)
        for (int i = 0; i < n; i++) {
            ctx[i] = sdup(shared);
            cont[i] = choice[i] ? fmt(" %s", choice[i]) : NULL;
        }
    for (int i = 0; i < n && !rc; i++)
        if (!ctx[i] || !cont[i] || !choice[i]) rc = dlq_errf(err, DLQ_ENOMEM, "out of memory formatting %s", t);
    if (!rc)
        rc = dlq_mc_set_add(out, n, (const char *const *)ctx, (const char *const *)cont, (const char *const *)choice,
                            d->gold, err);
    for (int i = 0; i < n; i++) {
        free(ctx[i]);
        free(cont[i]);
        free(choice[i]);
    }
    free(shared);
    return rc;
}

/* ---- files ---- */
static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int dlq_mc_load_file(const char *task, const char *path, int limit, dlq_mc_set *out, dlq_err *err) {
    const char *t = dlq_mc_task_canonical(task);
    if (!t) return dlq_errf(err, DLQ_EINVAL, "unknown task '%s'", task);
    snprintf(out->task, sizeof out->task, "%s", t);
    int rc = DLQ_OK;
    dlq_mc_doc d;
    if (ends_with(path, ".jsonl")) {
        FILE *f = fopen(path, "rb");
        if (!f) return dlq_errf(err, DLQ_EIO, "cannot open %s", path);
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        long lineno = 0;
        while ((limit <= 0 || out->n < limit) && (len = getline(&line, &cap, f)) >= 0) {
            lineno++;
            size_t k = (size_t)len;
            while (k && is_space((unsigned char)line[k - 1])) line[--k] = 0;
            if (!k) continue;
            if ((rc = dlq_mc_parse_native(t, line, &d, err)) || (rc = dlq_mc_format(t, &d, out, err))) {
                dlq_err_prefix(err, "%s line %ld", path, lineno);
                dlq_mc_doc_free(&d);
                break;
            }
            dlq_mc_doc_free(&d);
        }
        free(line);
        fclose(f);
        if (!rc && out->n == 0) rc = dlq_errf(err, DLQ_EFORMAT, "%s has no items", path);
        return rc;
    }
    json_error_t je;
    json_t *a = json_load_file(path, 0, &je);
    if (!a) {
        if (access(path, R_OK)) return dlq_errf(err, DLQ_EIO, "cannot open %s", path);
        return dlq_errf(err, DLQ_EFORMAT, "%s: JSON error line %d: %s", path, je.line, je.text);
    }
    if (!json_is_array(a)) {
        json_decref(a);
        return dlq_errf(err, DLQ_EFORMAT, "%s: expected a JSON array of {instruction, answer} items", path);
    }
    size_t n = json_array_size(a);
    if (!n) rc = dlq_errf(err, DLQ_EFORMAT, "%s has no items", path);
    for (size_t i = 0; i < n && !rc && (limit <= 0 || out->n < limit); i++) {
        json_t *o = json_array_get(a, i);
        if ((rc = dlq_mc_parse_llm_adapters(t, jstr(o, "instruction"), jstr(o, "answer"), &d, err)) ||
            (rc = dlq_mc_format(t, &d, out, err)))
            dlq_err_prefix(err, "%s item %zu", path, i);
        dlq_mc_doc_free(&d);
    }
    json_decref(a);
    return rc;
}

/* The layouts task files come in, under DIR, for each name a task goes by (ours, the social_i_qa folder
   name, LLM-Adapters' dataset folder names such as ARC-Challenge): lm-eval-style JSONL
   (NAME.jsonl, NAME/test.jsonl, NAME/validation.jsonl) and the LLM-Adapters JSON list (NAME/test.json,
   dataset/NAME/test.json as in its repository, NAME/test_shared.json as in our shared copy). */
int dlq_mc_find_file(const char *task, const char *dir, char *buf, size_t cap, dlq_err *err) {
    const char *t = dlq_mc_task_canonical(task);
    if (!t) return dlq_errf(err, DLQ_EINVAL, "unknown task '%s'", task);
    const char *names[3] = {t, !strcmp(t, "social_iqa") ? "social_i_qa" : NULL,
                            !strcmp(t, "arc_challenge") ? "ARC-Challenge" : !strcmp(t, "arc_easy") ? "ARC-Easy" : NULL};
    const char *pat[] = {"%s/%s.jsonl", "%s/%s/test.jsonl", "%s/%s/validation.jsonl", "%s/%s/test.json",
                         "%s/dataset/%s/test.json", "%s/%s/test_shared.json"};
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; names[k] && i < sizeof pat / sizeof pat[0]; i++) {
            snprintf(buf, cap, pat[i], dir, names[k]);
            if (!access(buf, R_OK)) return DLQ_OK;
        }
    char alt[64] = "";
    for (int k = 1; k < 3; k++)
        if (names[k]) snprintf(alt + strlen(alt), sizeof alt - strlen(alt), " or %s", names[k]);
    return dlq_errf(err, DLQ_EIO, "no data for task %s under %s: looked for NAME.jsonl, NAME/test.jsonl, NAME/validation.jsonl "
                                  "(lm-eval-style JSONL), NAME/test.json, dataset/NAME/test.json, NAME/test_shared.json "
                                  "(LLM-Adapters JSON), NAME = %s%s", t, dir, t, alt);
}
