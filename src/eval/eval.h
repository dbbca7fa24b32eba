/* Evaluation harness (SPEC §6, docs/eval.md): multiple-choice tasks scored
 * with the lm-evaluation-harness 0.4.x conventions, MMLU k-shot from the
 * Hendrycks CSVs, WikiText-2 perplexity.
 *
 * Simple use (what `dlqat eval` and `dlqat compare` do):
 *
 *     dlq_eval_opts o = dlq_eval_defaults();
 *     o.tasks = "piqa,arc_easy,mmlu";  o.data_dir = "../shared/data/tasks";  (the full sets)
 *     dlq_eval_result r;
 *     if (dlq_eval_tasks(model, model->tok, &o, &r, &err)) ...;
 *     for (int i = 0; i < r.n; i++) printf("%s %.4f\n", r.res[i].name, r.res[i].acc);
 *     dlq_eval_result_free(&r);
 *
 * The lower-level pieces (task readers, request encoding, scoring, metrics,
 * MMLU prompts) are public too so they can be tested one by one. */
#ifndef DLQ_EVAL_EVAL_H
#define DLQ_EVAL_EVAL_H

/* The task folder used when none is given: the sample the repo ships (data/tasks, 100 items per task,
   data/tasks/README.md), relative to the working directory; the full sets are ../shared/data/tasks. */
#define DLQ_EVAL_DATA_DEFAULT "data/tasks"

#include <stdint.h>

#include "core/err.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* ---- multiple-choice items ------------------------------------------------
 * One item = n requests (context[i], continuation[i]); the log-likelihood of
 * request i is the summed log-probability of its continuation tokens given
 * its context. Most tasks share one context and vary the continuation
 * (" " + choice); WinoGrande (partial scoring) varies the context and shares
 * the continuation. choice[i] is lm-eval's doc_to_choice string whose length
 * in characters (Unicode code points) normalizes acc_norm. */
typedef struct dlq_mc_item {
    int n;          /* number of choices (requests) */
    char **ctx;     /* [n] contexts */
    char **cont;    /* [n] continuations (target delimiter included) */
    char **choice;  /* [n] choice strings for acc_norm */
    int gold;       /* index of the correct choice */
    int subject;    /* MMLU: index into dlq_mmlu_subjects(); else -1 */
    int shots;      /* MMLU: number of examples kept in the prompt; else 0 */
} dlq_mc_item;

typedef struct dlq_mc_set {
    char task[64];     /* canonical task name ("piqa", ..., "mmlu") */
    dlq_mc_item *items;
    int n, cap;
    int has_norm;      /* lm-eval reports acc_norm for this task */
} dlq_mc_set;

void dlq_mc_set_free(dlq_mc_set *s);
/* Adds an item; copies the strings. */
int dlq_mc_set_add(dlq_mc_set *s, int n, const char *const *ctx, const char *const *cont,
                   const char *const *choice, int gold, dlq_err *err);

/* The supported multiple-choice task names, NULL-terminated:
 * piqa arc_easy arc_challenge boolq openbookqa winogrande social_iqa hellaswag. */
const char *const *dlq_mc_task_names(void);
/* Canonical name for a task or an alias (social_i_qa -> social_iqa,
 * arc-e, obqa, ...); NULL if unknown. */
const char *dlq_mc_task_canonical(const char *name);

/* A document in lm-eval's native fields, reduced to the strings the prompt
 * formats need; filled by the readers below, turned into an item by
 * dlq_mc_format(). */
typedef struct dlq_mc_doc {
    char *question;    /* piqa goal / arc question / boolq question / obqa question_stem /
                        * siqa context + " " + question / winogrande sentence /
                        * hellaswag activity_label (raw) */
    char *passage;     /* boolq passage ("" when the source has none); hellaswag ctx_a */
    char *extra;       /* hellaswag ctx_b; siqa question when split from context */
    char *choices[8];  /* piqa sol1/sol2, arc/obqa choices.text, siqa answerA..C,
                        * winogrande option1/2, hellaswag endings */
    int n_choices;
    int gold;          /* 0-based */
} dlq_mc_doc;
void dlq_mc_doc_free(dlq_mc_doc *d);

/* Parses one item of the LLM-Adapters format (the ../shared/data/tasks/<t>/
 * test_shared.json files): the question and choices are recovered from the
 * instruction text, the gold from answer ("solution2", "answer3", "option1",
 * "true"). A clear DLQ_EFORMAT error names what did not parse. */
int dlq_mc_parse_llm_adapters(const char *task, const char *instruction, const char *answer, dlq_mc_doc *doc,
                              dlq_err *err);
/* Parses one JSON object (text) of lm-eval's native dataset fields:
 * piqa goal/sol1/sol2/label; arc question/choices{text,label}/answerKey;
 * boolq passage/question/label; openbookqa question_stem/choices/answerKey;
 * winogrande sentence/option1/option2/answer; social_iqa context/question/
 * answerA..C/label (1-based); hellaswag activity_label/ctx_a/ctx_b/endings/label. */
int dlq_mc_parse_native(const char *task, const char *json_text, dlq_mc_doc *doc, dlq_err *err);

/* lm-eval's prompt format of the task -> one item (contexts, continuations,
 * acc_norm choices). */
int dlq_mc_format(const char *task, const dlq_mc_doc *doc, dlq_mc_set *out, dlq_err *err);

/* Loads a task's items from a file: a JSON array in the LLM-Adapters format
 * (*.json) or lm-eval native JSON Lines (*.jsonl). limit > 0 keeps the first
 * limit items. An item that does not parse is an error naming file and item. */
int dlq_mc_load_file(const char *task, const char *path, int limit, dlq_mc_set *out, dlq_err *err);
/* Finds the task's file under a data folder: DIR/<task>.jsonl,
 * DIR/<task>/{test,validation}.jsonl, DIR/<dir>/test_shared.json (dir =
 * social_i_qa for social_iqa). Writes the path to buf. */
int dlq_mc_find_file(const char *task, const char *dir, char *buf, size_t cap, dlq_err *err);

/* ---- requests and scoring --------------------------------------------------- */
/* lm-eval's _encode_pair: trailing whitespace of the context moves to the
 * front of the continuation; context and context+continuation are tokenized
 * (a BOS first when the tokenizer adds one); the continuation's tokens are
 * those of the whole past the context's token count. An empty context becomes
 * [BOS] (or [EOS] when there is no BOS), as lm-eval's prefix token. */
int dlq_mc_encode_pair(const dlq_tokenizer *t, const char *ctx, const char *cont, int32_t **ctx_ids, int *nctx,
                       int32_t **cont_ids, int *ncont, dlq_err *err);

typedef void (*dlq_eval_progress_fn)(const char *task, int64_t done, int64_t total, double elapsed, void *user);

/* Scores every request of every item: ll[k] for the k-th request in item
 * order (item 0's choices, then item 1's, ...). Requests sharing a context
 * share its forward pass (its KV cache is computed once, then each choice's
 * tokens run on a copy); contexts of up to `batch` items run in one batched,
 * right-padded forward. A request longer than the model's context is
 * left-truncated like lm-eval does. Deterministic for any batch. */
int dlq_mc_score(const dlq_model *m, const dlq_tokenizer *t, const dlq_mc_set *s, int batch, double *ll,
                 dlq_eval_progress_fn progress, void *user, dlq_err *err);

/* lm-eval's mean stderr of a 0/1 metric: sample std (n-1) / sqrt(n) =
 * sqrt(p(1-p)/(n-1)); 0 for n < 2. */
double dlq_acc_stderr(double acc, int64_t n);
/* Index of the first maximum (numpy argmax) of ll[i] (norm: / choice length
 * in code points, as lm-eval's acc_norm). */
int dlq_mc_argmax(const dlq_mc_item *it, const double *ll, int norm);
/* Length of a UTF-8 string in code points (Python's len()). */
int64_t dlq_utf8_len(const char *s);

/* ---- MMLU ---------------------------------------------------------------------- */
/* The 57 subjects (sorted) and their categories: "stem", "humanities",
 * "social_sciences", "other" (the mapping of lm-eval / Hendrycks et al.). */
int dlq_mmlu_n_subjects(void);
const char *dlq_mmlu_subject(int i);
const char *dlq_mmlu_category(int i);
int dlq_mmlu_subject_index(const char *name); /* -1 if unknown */

typedef struct dlq_mmlu_q {
    char *q, *a[4];
    int gold; /* 0..3 */
} dlq_mmlu_q;
/* Reads a Hendrycks CSV (question, A, B, C, D, answer letter; RFC 4180
 * quoting). *qs is malloc'd; free with dlq_mmlu_free. */
int dlq_mmlu_read_csv(const char *path, dlq_mmlu_q **qs, int *n, dlq_err *err);
void dlq_mmlu_free(dlq_mmlu_q *qs, int n);
/* The k-shot prompt of lm-eval's mmlu task: description "The following are
 * multiple choice questions (with answers) about {subject with spaces}.\n\n",
 * then k dev examples "{q.strip()}\nA. ..\nB. ..\nC. ..\nD. ..\nAnswer: X"
 * each followed by "\n\n", then the question ending in "\nAnswer:".
 * Returns a malloc'd string. */
char *dlq_mmlu_prompt(const char *subject, const dlq_mmlu_q *dev, int k, const dlq_mmlu_q *q);
/* Builds the MMLU items of one split (dir/<split>/<subject>_<split>.csv) with
 * `shots` examples from dir/dev, dropping examples (last first) while the
 * request does not fit the context: tokens(BOS + prompt + " X") - 1 > n_ctx.
 * limit > 0: first limit questions of each subject. subjects: comma list or
 * NULL for all. */
int dlq_mmlu_load(const char *dir, const char *split, const char *subjects, int shots, int limit,
                  const dlq_tokenizer *t, int n_ctx, dlq_mc_set *out, dlq_err *err);

/* ---- WikiText-2 ---------------------------------------------------------------- */
/* The GPTQ protocol's text: the Hugging Face wikitext-2-raw-v1 `text` rows
 * are the raw file's lines with their "\n" (universal newlines: "\r\n" ->
 * "\n"), whitespace-only lines as ""; GPTQ joins the rows with "\n\n".
 * Returns a malloc'd string and its length. */
char *dlq_wikitext_gptq_join(const char *raw, size_t n, size_t *out_len);

/* ---- the entry point -------------------------------------------------------------- */
typedef struct dlq_eval_opts {
    const char *tasks;      /* comma list: MC task names, "mmlu", "wikitext2"; default all MC tasks */
    const char *data_dir;   /* folder of the task files (default DLQ_EVAL_DATA_DEFAULT) */
    const char *wikitext;   /* wikitext-2 raw file (default <data_dir>/../text/wikitext-2-raw/wiki.test.raw*) */
    const char *mmlu_split; /* "test" (default) or "val" */
    const char *mmlu_subjects; /* NULL = all 57 */
    int limit;              /* > 0: first N items of each task (MMLU: of each subject) */
    int shots;              /* MMLU shots (default 5); other tasks are 0-shot */
    int batch;              /* items per batched forward (default 8) */
    int ctx;                /* perplexity window (0 = the model's context) */
    int keep_items;         /* keep per-item log-likelihoods in the results */
    dlq_eval_progress_fn progress;
    void *user;
} dlq_eval_opts;
dlq_eval_opts dlq_eval_defaults(void);

typedef enum { DLQ_RES_TASK = 0, DLQ_RES_GROUP = 1, DLQ_RES_SUBTASK = 2, DLQ_RES_PPL = 3 } dlq_res_kind;

typedef struct dlq_item_result {
    int n, gold, pred, pred_norm;
    double *ll; /* [n] */
} dlq_item_result;

typedef struct dlq_task_result {
    char name[96];          /* "piqa", "mmlu", "mmlu_stem", "mmlu_abstract_algebra", "wikitext2" */
    dlq_res_kind kind;
    int64_t n;              /* items scored */
    int has_norm;
    double acc, acc_stderr, acc_norm, acc_norm_stderr;
    int shots;              /* MMLU: requested shots */
    double mean_shots;      /* MMLU: mean shots kept after dropping */
    /* DLQ_RES_PPL: both protocols, window ctx */
    double ppl, nll, ppl_plain, nll_plain;
    int64_t tokens, windows, tokens_plain, windows_plain;
    int ctx;
    double seconds, items_per_s;
    dlq_item_result *items; /* [n] when opts.keep_items (MC tasks and MMLU subjects) */
} dlq_task_result;

typedef struct dlq_eval_result {
    dlq_task_result *res;
    int n;
    double seconds;
} dlq_eval_result;

/* Evaluates the tasks of o on model m with tokenizer tok (normally m->tok).
 * res lists, in order, each task (MMLU: "mmlu", then its four categories,
 * then the subjects). */
int dlq_eval_tasks(const dlq_model *m, const dlq_tokenizer *tok, const dlq_eval_opts *o, dlq_eval_result *res,
                   dlq_err *err);
void dlq_eval_result_free(dlq_eval_result *r);

#endif
