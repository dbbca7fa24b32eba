/* eval: task readers (LLM-Adapters text, lm-eval native fields) with their
 * errors, lm-eval prompt formats, request encoding, acc_norm, stderr, MMLU
 * CSV / prompt / shot dropping, the WikiText-2 GPTQ join; then the scorer on
 * models/english-mix-7M against lm-evaluation-harness itself
 * (tests/fixtures/eval/lmeval_ref.json, scripts/lmeval_ref.py): every
 * per-choice log-likelihood within 1e-3 and every prediction; batch 1 vs 8;
 * the model stored in fp32 vs bf16. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/eval.h"
#include "io/hf_write.h"
#include "t.h"

#define MODEL "models/english-mix-7M"
#define REF "tests/fixtures/eval/lmeval_ref.json"

static dlq_err err;

/* ---------------------------------------------------------------- readers -- */
static void one_item(const char *task, const char *ins, const char *ans, dlq_mc_set *s) {
    dlq_mc_doc d;
    int rc = dlq_mc_parse_llm_adapters(task, ins, ans, &d, &err);
    CHECK(rc == 0, "%s: %s", task, err.msg);
    if (!rc) {
        rc = dlq_mc_format(task, &d, s, &err);
        CHECK(rc == 0, "%s format: %s", task, err.msg);
    }
    dlq_mc_doc_free(&d);
}

static void test_llm_adapters(void) {
    dlq_mc_set s = {0};
    one_item("piqa",
             "Please choose the correct solution to the question: dresser\n\nSolution1: replace drawer with bobby pin "
             "\n\nSolution2: finish, woodgrain with  bobby pin \n\nAnswer format: solution1/solution2",
             "solution2", &s);
    one_item("arc_easy",
             "Please choose the correct answer to the question: Which is a gas?\n\nAnswer1: ice Answer2: steam "
             "Answer3: rock\n\nAnswer format: answer1/answer2/answer3",
             "answer2", &s);
    one_item("boolq",
             "Please answer the following question with true or false, question: is the sky blue?\n\nAnswer format: "
             "true/false",
             "true", &s);
    one_item("openbookqa",
             "Please choose the correct answer to the question: There is most likely going to be fog around:\n\n"
             "Answer1: a marsh Answer2: a tundra Answer3: the plains Answer4: a desert\n\nAnswer format: "
             "answer1/answer2/answer3/answer4",
             "answer1", &s);
    one_item("winogrande",
             "Please choose the correct answer to fill in the blank to complete the given sentence: Sarah was a much "
             "better surgeon than Maria so _ always got the easier cases.\n\nOption1: Sarah Option2: Maria Answer "
             "format: option1/option2",
             "option2", &s);
    one_item("social_i_qa",
             "Please choose the correct answer to the question: Tracy didn't go home. What does Tracy need to do?\n\n"
             "Answer1: make a plan Answer2: Go home Answer3: Find somewhere to go\n\nAnswer format: "
             "answer1/answer2/answer3",
             "answer3", &s);
    CHECK(s.n == 6, "%d items", s.n);
    if (s.n == 6) {
        dlq_mc_item *p = &s.items[0];
        CHECK(p->n == 2 && p->gold == 1 && !strcmp(p->ctx[0], "Question: dresser\nAnswer:"), "piqa ctx '%s'", p->ctx[0]);
        CHECK(!strcmp(p->cont[0], " replace drawer with bobby pin ") && !strcmp(p->cont[1], " finish, woodgrain with  bobby pin "),
              "piqa conts '%s' '%s'", p->cont[0], p->cont[1]);
        dlq_mc_item *a = &s.items[1];
        CHECK(a->n == 3 && a->gold == 1 && !strcmp(a->ctx[2], "Question: Which is a gas?\nAnswer:") &&
                  !strcmp(a->cont[0], " ice") && !strcmp(a->cont[1], " steam") && !strcmp(a->cont[2], " rock") &&
                  !strcmp(a->choice[1], "steam"),
              "arc '%s' '%s'", a->ctx[0], a->cont[1]);
        dlq_mc_item *b = &s.items[2];
        CHECK(b->gold == 1 && !strcmp(b->ctx[0], "\nQuestion: is the sky blue?\nAnswer:") && !strcmp(b->cont[0], " no") &&
                  !strcmp(b->cont[1], " yes"),
              "boolq '%s'", b->ctx[0]);
        dlq_mc_item *o = &s.items[3];
        CHECK(o->n == 4 && o->gold == 0 && !strcmp(o->ctx[0], "There is most likely going to be fog around:") &&
                  !strcmp(o->cont[3], " a desert"),
              "obqa '%s' '%s'", o->ctx[0], o->cont[3]);
        dlq_mc_item *w = &s.items[4];
        CHECK(w->gold == 1 && !strcmp(w->ctx[0], "Sarah was a much better surgeon than Maria so Sarah") &&
                  !strcmp(w->ctx[1], "Sarah was a much better surgeon than Maria so Maria") &&
                  !strcmp(w->cont[0], " always got the easier cases.") && !strcmp(w->cont[1], w->cont[0]) &&
                  !strcmp(w->choice[1], w->ctx[1]),
              "winogrande '%s' '%s'", w->ctx[0], w->cont[0]);
        dlq_mc_item *q = &s.items[5];
        CHECK(q->gold == 2 && !strcmp(q->ctx[0], "Q: Tracy didn't go home. What does Tracy need to do?\nA:") &&
                  !strcmp(q->cont[1], " Go home"),
              "siqa '%s'", q->ctx[0]);
    }
    dlq_mc_set_free(&s);

    /* malformed items: a clear error naming what did not parse */
    static const struct { const char *task, *ins, *ans, *want; } BAD[] = {
        {"piqa", "Choose: x\n\nSolution1: a\n\nSolution2: b\n\nAnswer format: solution1/solution2", "solution1",
         "missing"},
        {"piqa", "Please choose the correct solution to the question: x\n\nSolution1: a\n\nAnswer format: solution1/solution2",
         "solution1", "Solution2"},
        {"arc_easy", "Please choose the correct answer to the question: q\n\nAnswer1: a Answer3: c\n\nAnswer format: "
                     "answer1/answer2/answer3", "answer1", "Answer2"},
        {"arc_easy", "Please choose the correct answer to the question: q\n\nAnswer1: a Answer2: b", "answer1",
         "Answer format"},
        {"arc_easy", "Please choose the correct answer to the question: q\n\nAnswer1: a Answer2: b\n\nAnswer format: "
                     "answer1/answer2", "answer3", "not one of the choices"},
        {"boolq", "Please answer the following question with true or false, question: q?\n\nAnswer format: true/false",
         "maybe", "not one of the choices"},
        {"winogrande", "Please choose the correct answer to fill in the blank to complete the given sentence: no blank "
                       "here.\n\nOption1: a Option2: b Answer format: option1/option2", "option1", "blank"},
        {"winogrande", "Please choose the correct answer to fill in the blank to complete the given sentence: a _ b",
         "option1", "Option1"},
        {"hellaswag", "anything", "answer1", "native JSONL"},
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        dlq_mc_doc d;
        memset(&err, 0, sizeof err);
        int rc = dlq_mc_parse_llm_adapters(BAD[i].task, BAD[i].ins, BAD[i].ans, &d, &err);
        CHECK(rc != 0 && strstr(err.msg, BAD[i].want), "bad item %zu (%s): rc %d '%s'", i, BAD[i].task, rc, err.msg);
        if (!rc) dlq_mc_doc_free(&d);
    }
    dlq_mc_doc d;
    CHECK(dlq_mc_parse_llm_adapters("nosuchtask", "x", "y", &d, &err) == DLQ_EINVAL, "unknown task");
    CHECK(dlq_mc_task_canonical("social_i_qa") && !strcmp(dlq_mc_task_canonical("social_i_qa"), "social_iqa"), "alias");
}

static void native(const char *task, const char *json, dlq_mc_set *s) {
    dlq_mc_doc d;
    int rc = dlq_mc_parse_native(task, json, &d, &err);
    CHECK(rc == 0, "%s native: %s", task, err.msg);
    if (!rc) {
        rc = dlq_mc_format(task, &d, s, &err);
        CHECK(rc == 0, "%s format: %s", task, err.msg);
    }
    dlq_mc_doc_free(&d);
}

static void test_native(void) {
    dlq_mc_set s = {0};
    native("piqa", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 1}", &s);
    native("arc_challenge",
           "{\"question\": \"q\", \"choices\": {\"text\": [\"x\", \"y\", \"z\"], \"label\": [\"1\", \"2\", \"3\"]}, "
           "\"answerKey\": \"3\"}", &s);
    native("openbookqa",
           "{\"question_stem\": \"stem\", \"choices\": {\"text\": [\"x\", \"y\"], \"label\": [\"A\", \"B\"]}, "
           "\"answerKey\": \" B\"}", &s);
    native("boolq", "{\"passage\": \"P.\", \"question\": \"is it\", \"label\": false}", &s);
    native("winogrande", "{\"sentence\": \"A and B: _ won , he said.\", \"option1\": \"A\", \"option2\": \"B\", \"answer\": \"2\"}", &s);
    native("social_iqa", "{\"context\": \"C.\", \"question\": \"Q?\", \"answerA\": \"a\", \"answerB\": \"b\", "
                         "\"answerC\": \"c\", \"label\": \"3\"}", &s);
    /* hellaswag: lm-eval's preprocess ([title] -> ". ", [..] dropped, "  " -> " ", ctx_b.capitalize()) */
    native("hellaswag", "{\"activity_label\": \"Hair\", \"ctx_a\": \"[header] How to braid [title] Brush.  [step] Go\", "
                        "\"ctx_b\": \"tHE End\", \"endings\": [\" x [y] z  \", \"[open w\"], \"label\": 1}", &s);
    CHECK(s.n == 7, "%d items", s.n);
    if (s.n == 7) {
        CHECK(s.items[0].gold == 1 && !strcmp(s.items[0].ctx[0], "Question: g\nAnswer:"), "piqa");
        CHECK(s.items[1].gold == 2 && s.items[1].n == 3 && !strcmp(s.items[1].cont[2], " z"), "arc label digits");
        CHECK(s.items[2].gold == 1 && !strcmp(s.items[2].ctx[0], "stem"), "obqa answerKey lstrip");
        CHECK(s.items[3].gold == 0 && !strcmp(s.items[3].ctx[0], "P.\nQuestion: is it?\nAnswer:"), "boolq '%s'",
              s.items[3].ctx[0]);
        CHECK(s.items[4].gold == 1 && !strcmp(s.items[4].ctx[1], "A and B: B") && !strcmp(s.items[4].cont[0], " won , he said."),
              "winogrande '%s' '%s'", s.items[4].ctx[1], s.items[4].cont[0]);
        CHECK(s.items[5].gold == 2 && !strcmp(s.items[5].ctx[0], "Q: C. Q?\nA:"), "siqa '%s'", s.items[5].ctx[0]);
        dlq_mc_item *h = &s.items[6];
        /* as Python: "Hair:  How" -> "Hair: How"; "Brush.   Go" (3 spaces) -> "Brush.  Go" (one pass) */
        CHECK(!strcmp(h->ctx[0], "Hair: How to braid. Brush.  Go The end"), "hellaswag ctx '%s'", h->ctx[0]);
        CHECK(!strcmp(h->choice[0], "x z") && !strcmp(h->cont[0], " x z") && !strcmp(h->choice[1], "[open w") &&
                  h->gold == 1,
              "hellaswag choices '%s' '%s'", h->choice[0], h->choice[1]);
    }
    dlq_mc_set_free(&s);
    static const struct { const char *task, *json, *want; } BAD[] = {
        {"piqa", "{\"goal\": \"g\", \"sol1\": \"a\", \"label\": 0}", "sol2"},
        {"piqa", "[1, 2]", "not a JSON object"},
        {"piqa", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 2}", "label"},
        {"arc_easy", "{\"question\": \"q\", \"choices\": {\"text\": [\"x\", \"y\"], \"label\": [\"A\", \"B\"]}, "
                     "\"answerKey\": \"C\"}", "answerKey"},
        {"winogrande", "{\"sentence\": \"no blank\", \"option1\": \"a\", \"option2\": \"b\", \"answer\": \"1\"}", "blank"},
        {"hellaswag", "{\"activity_label\": \"a\", \"ctx_a\": \"b\", \"ctx_b\": \"c\", \"endings\": [\"x\", \"y\"], "
                      "\"label\": 5}", "label"},
        {"social_iqa", "{\"context\": \"c\"}", "answerA"},
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        dlq_mc_doc d;
        memset(&err, 0, sizeof err);
        int rc = dlq_mc_parse_native(BAD[i].task, BAD[i].json, &d, &err);
        CHECK(rc == DLQ_EFORMAT && strstr(err.msg, BAD[i].want), "bad native %zu: rc %d '%s'", i, rc, err.msg);
        if (!rc) dlq_mc_doc_free(&d);
    }
}

static void test_files(void) {
    char dir[] = "/tmp/dlq_test_eval_XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return; }
    char p[256], q[300];
    snprintf(p, sizeof p, "%s/piqa.jsonl", dir);
    FILE *f = fopen(p, "w");
    fprintf(f, "{\"goal\": \"g1\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0}\n\n"
               "{\"goal\": \"g2\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 1}\n"
               "{\"goal\": \"g3\", \"sol1\": \"a\", \"label\": 1}\n");
    fclose(f);
    dlq_mc_set s = {0};
    CHECK(dlq_mc_find_file("piqa", dir, q, sizeof q, &err) == 0 && !strcmp(q, p), "find %s", q);
    CHECK(dlq_mc_load_file("piqa", p, 2, &s, &err) == 0 && s.n == 2, "limit 2: %s", err.msg);
    dlq_mc_set_free(&s);
    memset(&err, 0, sizeof err);
    CHECK(dlq_mc_load_file("piqa", p, 0, &s, &err) == DLQ_EFORMAT && strstr(err.msg, "line 4") && strstr(err.msg, "sol2"),
          "bad line named: %s", err.msg);
    dlq_mc_set_free(&s);
    snprintf(p, sizeof p, "%s/boolq.json", dir);
    f = fopen(p, "w");
    fprintf(f, "[{\"instruction\": \"Please answer the following question with true or false, question: q?\\n\\nAnswer "
               "format: true/false\", \"answer\": \"true\"}, {\"instruction\": \"garbage\", \"answer\": \"true\"}]");
    fclose(f);
    CHECK(dlq_mc_load_file("boolq", p, 0, &s, &err) == DLQ_EFORMAT && strstr(err.msg, "item 1") && strstr(err.msg, "garbage"),
          "bad item named: %s", err.msg);
    dlq_mc_set_free(&s);
    CHECK(dlq_mc_load_file("boolq", "/nonexistent/x.json", 0, &s, &err) == DLQ_EIO, "missing file: %s", err.msg);
    CHECK(dlq_mc_find_file("winogrande", dir, q, sizeof q, &err) == DLQ_EIO && strstr(err.msg, "winogrande") &&
              strstr(err.msg, "dataset/NAME/test.json") && strstr(err.msg, "NAME.jsonl"),
          "a missing task names the layouts looked for: %s", err.msg);
    dlq_mc_set_free(&s);
    /* LLM-Adapters' own layout (dataset/ARC-Challenge/test.json, its folder names) and a plain NAME/test.json */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/dataset/ARC-Challenge %s/boolq && cp %s/boolq.json %s/dataset/ARC-Challenge/test.json "
             "&& cp %s/boolq.json %s/boolq/test.json", dir, dir, dir, dir, dir, dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    snprintf(p, sizeof p, "%s/dataset/ARC-Challenge/test.json", dir);
    CHECK(dlq_mc_find_file("arc_challenge", dir, q, sizeof q, &err) == 0 && !strcmp(q, p), "LLM-Adapters layout: %s", q);
    snprintf(p, sizeof p, "%s/boolq/test.json", dir);
    CHECK(dlq_mc_find_file("boolq", dir, q, sizeof q, &err) == 0 && !strcmp(q, p), "NAME/test.json: %s", q);
    /* MMLU CSV: quotes, doubled quotes, CRLF; errors */
    snprintf(p, sizeof p, "%s/x_test.csv", dir);
    f = fopen(p, "w");
    fprintf(f, "\"Say \"\"hi\"\", then\nnewline\",a,\"b,c\",d,e,C\r\nq2,1,2,3,4,A\n");
    fclose(f);
    dlq_mmlu_q *qs;
    int n;
    CHECK(dlq_mmlu_read_csv(p, &qs, &n, &err) == 0 && n == 2, "csv: %s", err.msg);
    if (n == 2) {
        CHECK(!strcmp(qs[0].q, "Say \"hi\", then\nnewline") && !strcmp(qs[0].a[1], "b,c") && qs[0].gold == 2 &&
                  qs[1].gold == 0 && !strcmp(qs[1].a[3], "4"),
              "csv fields '%s' '%s'", qs[0].q, qs[0].a[1]);
        char *pr = dlq_mmlu_prompt("high_school_x", qs, 1, &qs[1]);
        const char *want = "The following are multiple choice questions (with answers) about high school x.\n\n"
                           "Say \"hi\", then\nnewline\nA. a\nB. b,c\nC. d\nD. e\nAnswer: C\n\n"
                           "q2\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:";
        CHECK(pr && !strcmp(pr, want), "prompt:\n%s", pr);
        free(pr);
        pr = dlq_mmlu_prompt("s", qs, 0, &qs[1]);
        CHECK(pr && !strcmp(pr, "The following are multiple choice questions (with answers) about s.\n\nq2\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"),
              "0-shot prompt:\n%s", pr);
        free(pr);
        dlq_mmlu_free(qs, n);
    }
    static const char *const BADCSV[][2] = {{"q,a,b,c,d\n", "5 fields"}, {"q,a,b,c,d,E\n", "not A, B, C or D"},
                                            {"\"q,a,b,c,d,A\n", "unterminated"}};
    for (int i = 0; i < 3; i++) {
        f = fopen(p, "w");
        fputs(BADCSV[i][0], f);
        fclose(f);
        memset(&err, 0, sizeof err);
        CHECK(dlq_mmlu_read_csv(p, &qs, &n, &err) == DLQ_EFORMAT && strstr(err.msg, BADCSV[i][1]) && strstr(err.msg, "record 1"),
              "bad csv %d: %s", i, err.msg);
    }
    unlink(p);
    snprintf(p, sizeof p, "%s/piqa.jsonl", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/boolq.json", dir);
    unlink(p);
    snprintf(cmd, sizeof cmd, "rm -rf %s/dataset %s/boolq", dir, dir);
    if (system(cmd)) {}
    rmdir(dir);
}

static void test_metrics(void) {
    CHECK(fabs(dlq_acc_stderr(0.5, 5) - 0.25) < 1e-15, "stderr %g", dlq_acc_stderr(0.5, 5));
    /* lm-eval mean_stderr of [1,0,0,1,1,1]: sample std (ddof 1) / sqrt(6) */
    double m = 4.0 / 6, var = (4 * (1 - m) * (1 - m) + 2 * m * m) / 5;
    CHECK(fabs(dlq_acc_stderr(m, 6) - sqrt(var / 6)) < 1e-15, "stderr %g vs %g", dlq_acc_stderr(m, 6), sqrt(var / 6));
    CHECK(dlq_acc_stderr(1, 1) == 0 && dlq_acc_stderr(0, 10) == 0, "edge stderr");
    CHECK(dlq_utf8_len("h\xc3\xa9llo \xe2\x82\xac") == 7, "utf8 len %lld", (long long)dlq_utf8_len("h\xc3\xa9llo \xe2\x82\xac"));
    char *ch[3] = {"ab", "abcd", "\xc3\xa9\xc3\xa9"};
    dlq_mc_item it = {.n = 3, .choice = ch};
    double ll[3] = {-4, -6, -3.9};
    CHECK(dlq_mc_argmax(&it, ll, 0) == 2, "acc argmax");
    CHECK(dlq_mc_argmax(&it, ll, 1) == 1, "acc_norm divides by characters: -1.5 best");
    double tie[3] = {-2, -4, -2};
    CHECK(dlq_mc_argmax(&it, tie, 0) == 0, "first maximum on ties");
    CHECK(dlq_mc_argmax(&it, tie, 1) == 0, "norm ties (-1, -1, -1) -> first");
    CHECK(dlq_mmlu_n_subjects() == 57, "57 subjects");
    int cnt[4] = {0};
    static const char *const C[4] = {"stem", "humanities", "social_sciences", "other"};
    for (int i = 0; i < dlq_mmlu_n_subjects(); i++)
        for (int c = 0; c < 4; c++) cnt[c] += !strcmp(dlq_mmlu_category(i), C[c]);
    /* lm-eval's grouping: 19 STEM, 13 humanities, 12 social sciences, 13 other */
    CHECK(cnt[0] == 19 && cnt[1] == 13 && cnt[2] == 12 && cnt[3] == 13, "categories %d %d %d %d", cnt[0], cnt[1], cnt[2],
          cnt[3]);
    CHECK(!strcmp(dlq_mmlu_category(dlq_mmlu_subject_index("philosophy")), "humanities") &&
              !strcmp(dlq_mmlu_category(dlq_mmlu_subject_index("nutrition")), "other") &&
              !strcmp(dlq_mmlu_category(dlq_mmlu_subject_index("high_school_geography")), "social_sciences"),
          "category mapping");
    /* WikiText-2: HF rows = lines with "\n" (CRLF read as LF), blank lines ""; joined by "\n\n" */
    const char raw[] = " = T = \r\n \r\n x y\r\nlast";
    size_t n;
    char *j = dlq_wikitext_gptq_join(raw, sizeof raw - 1, &n);
    const char *want = " = T = \n\n\n\n\n x y\n\n\nlast";
    CHECK(j && n == strlen(want) && !strcmp(j, want), "join '%s'", j);
    free(j);
}

/* ---------------------------------------------------------- with the model -- */
static void test_encode(const dlq_tokenizer *t) {
    int32_t *c1, *k1, *c2, *k2;
    int n1, m1, n2, m2;
    CHECK(dlq_mc_encode_pair(t, "Question: why?\nAnswer: ", "Because", &c1, &n1, &k1, &m1, &err) == 0, "%s", err.msg);
    CHECK(dlq_mc_encode_pair(t, "Question: why?\nAnswer:", " Because", &c2, &n2, &k2, &m2, &err) == 0, "%s", err.msg);
    CHECK(n1 == n2 && m1 == m2 && !memcmp(c1, c2, (size_t)n1 * 4) && !memcmp(k1, k2, (size_t)m1 * 4),
          "trailing space moves to the continuation");
    CHECK(c1[0] == dlq_tok_bos(t) && dlq_tok_add_bos(t), "BOS first");
    /* continuation = tokens of the whole past the context's count */
    int32_t *w;
    size_t nw;
    const char *whole = "Question: why?\nAnswer: Because";
    CHECK(dlq_tok_encode(t, whole, strlen(whole), -1, &w, &nw, &err) == 0, "%s", err.msg);
    CHECK((int)nw == n1 + m1 && !memcmp(w + n1, k1, (size_t)m1 * 4), "split at the context's token count");
    free(w), free(c1), free(k1), free(c2), free(k2);
    CHECK(dlq_mc_encode_pair(t, "", " x", &c1, &n1, &k1, &m1, &err) == 0 && n1 == 1 && c1[0] == dlq_tok_bos(t),
          "empty context -> [BOS]");
    free(c1), free(k1);
    memset(&err, 0, sizeof err);
    CHECK(dlq_mc_encode_pair(t, "abc", "", &c1, &n1, &k1, &m1, &err) == DLQ_EINVAL && strstr(err.msg, "no tokens"),
          "empty continuation: %s", err.msg);
}

typedef struct ref_item {
    int task;            /* index into the fixture's task list, -1 for MMLU */
    double ll[8];
    int gold, acc, acc_norm, has_norm;
} ref_item;

/* builds a set from the fixture's requests; returns the reference per item */
static ref_item *load_ref(json_t *root, dlq_mc_set *s, const char *only_task) {
    ref_item *r = calloc(4096, sizeof *r);
    json_t *tasks = json_object_get(root, "tasks");
    const char *name;
    json_t *tv;
    snprintf(s->task, sizeof s->task, "ref");
    json_object_foreach(tasks, name, tv) {
        if (only_task && strcmp(name, only_task)) continue;
        json_t *items = json_object_get(tv, "items");
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
            json_t *ctx = json_object_get(it, "ctx"), *cont = json_object_get(it, "cont"), *ll = json_object_get(it, "ll");
            int n = (int)json_array_size(cont);
            const char *c[8], *k[8], *ch[8];
            for (int j = 0; j < n; j++) {
                c[j] = json_is_string(ctx) ? json_string_value(ctx) : json_string_value(json_array_get(ctx, j));
                k[j] = json_string_value(json_array_get(cont, j));
                /* acc_norm length: the choice (continuation minus the delimiter); winogrande: the context */
                ch[j] = strcmp(name, "winogrande") ? k[j] + 1 : c[j];
            }
            ref_item *x = &r[s->n];
            for (int j = 0; j < n; j++) x->ll[j] = json_real_value(json_array_get(ll, j));
            x->gold = (int)json_integer_value(json_object_get(it, "gold"));
            x->acc = json_number_value(json_object_get(it, "acc")) > 0.5;
            x->has_norm = json_object_get(it, "acc_norm") != NULL;
            x->acc_norm = json_number_value(json_object_get(it, "acc_norm")) > 0.5;
            dlq_mc_set_add(s, n, c, k, ch, x->gold, &err);
        }
    }
    if (!only_task) {
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(root, "mmlu"), i, it) {
            const char *c = json_string_value(json_object_get(it, "ctx"));
            const char *ctx[4] = {c, c, c, c}, *k[4] = {" A", " B", " C", " D"}, *ch[4] = {"A", "B", "C", "D"};
            ref_item *x = &r[s->n];
            for (int j = 0; j < 4; j++) x->ll[j] = json_real_value(json_array_get(json_object_get(it, "ll"), j));
            x->gold = (int)json_integer_value(json_object_get(it, "gold"));
            x->acc = json_number_value(json_object_get(it, "acc")) > 0.5;
            x->task = -1;
            dlq_mc_set_add(s, 4, ctx, k, ch, x->gold, &err);
        }
    }
    return r;
}

static double *score(const dlq_model *m, const dlq_mc_set *s, int batch) {
    int nreq = 0;
    for (int i = 0; i < s->n; i++) nreq += s->items[i].n;
    double *ll = malloc((size_t)nreq * sizeof *ll);
    int rc = dlq_mc_score(m, m->tok, s, batch, ll, NULL, NULL, &err);
    CHECK(rc == 0, "score (batch %d): %s", batch, err.msg);
    if (rc) { free(ll); return NULL; }
    return ll;
}

static void test_vs_lmeval(const dlq_model *m, json_t *root) {
    dlq_mc_set s = {0};
    ref_item *r = load_ref(root, &s, NULL);
    CHECK(s.n >= 7 * 50 + 5 + 40, "fixture has %d items", s.n);
    double *ll = score(m, &s, 8);
    if (!ll) { dlq_mc_set_free(&s); free(r); return; }
    double worst = 0;
    int bad_pred = 0, bad_ll = 0;
    for (int i = 0, k = 0; i < s.n; k += s.items[i].n, i++) {
        const dlq_mc_item *it = &s.items[i];
        for (int j = 0; j < it->n; j++) {
            double d = fabs(ll[k + j] - r[i].ll[j]);
            worst = d > worst ? d : worst;
            if (!(d <= 1e-3) && bad_ll++ < 5) CHECK(0, "item %d choice %d: ll %.6f vs lm-eval %.6f", i, j, ll[k + j], r[i].ll[j]);
        }
        int acc = dlq_mc_argmax(it, ll + k, 0) == it->gold, accn = dlq_mc_argmax(it, ll + k, 1) == it->gold;
        if ((acc != r[i].acc || (r[i].has_norm && accn != r[i].acc_norm)) && bad_pred++ < 5)
            CHECK(0, "item %d: acc %d/%d acc_norm %d/%d (C / lm-eval)", i, acc, r[i].acc, accn, r[i].acc_norm);
    }
    CHECK(bad_ll == 0 && bad_pred == 0, "%d log-likelihoods off, %d predictions differ", bad_ll, bad_pred);
    printf("vs lm-eval: %d items, max |ll - lm-eval| = %.2e\n", s.n, worst);

    /* batch 1 vs 8: same log-likelihoods (padding and masking), same
     * predictions; on the first 120 items (piqa, arc_easy, arc_challenge) to keep the test fast */
    int full = s.n;
    s.n = s.n < 120 ? s.n : 120;
    double *l1 = score(m, &s, 1);
    if (l1) {
        double d = 0;
        int k = 0;
        for (int i = 0; i < s.n; i++) k += s.items[i].n;
        for (int j = 0; j < k; j++) d = fmax(d, fabs(l1[j] - ll[j]));
        int same = 1;
        for (int i = 0, o = 0; i < s.n; o += s.items[i].n, i++)
            same &= dlq_mc_argmax(&s.items[i], l1 + o, 0) == dlq_mc_argmax(&s.items[i], ll + o, 0) &&
                    dlq_mc_argmax(&s.items[i], l1 + o, 1) == dlq_mc_argmax(&s.items[i], ll + o, 1);
        /* rows of a batched sgemm may round differently from a single row (float32 sums of
         * ~100-magnitude log-likelihoods: 1e-5 seen); predictions must not change */
        CHECK(d <= 1e-4 && same, "batch 1 vs 8: max diff %.3e, predictions %s", d, same ? "same" : "differ");
        printf("batch 1 vs 8: max |diff| = %.2e\n", d);
        free(l1);
    }
    s.n = full;
    free(ll);
    free(r);
    dlq_mc_set_free(&s);
}

/* the C readers produce exactly lm-eval's requests for the shared task files */
static void test_readers_vs_fixture(const dlq_model *m, json_t *root) {
    json_t *tasks = json_object_get(root, "tasks");
    const char *name;
    json_t *tv;
    json_object_foreach(tasks, name, tv) {
        const char *src = json_string_value(json_object_get(tv, "source"));
        const char *path = src;
        char buf[1024];
        if (strcmp(name, "hellaswag")) {
            const char *rel = strstr(src, "data/tasks/");
            path = rel ? t_shared(rel + 5) : NULL;
            if (path) snprintf(buf, sizeof buf, "%s", path);
            else if (dlq_mc_find_file(name, DLQ_EVAL_DATA_DEFAULT, buf, sizeof buf, &err) == 0)
                /* the repo's sample holds the first 100 items of the same files: the fixture's 50 are among them */
                printf("%s: ../shared absent, reading the shipped sample %s\n", name, buf);
            else { SKIP("%s: ../shared/data/%s absent, and no sample in " DLQ_EVAL_DATA_DEFAULT, name, rel ? rel + 5 : src); continue; }
            path = buf;
        }
        json_t *items = json_object_get(tv, "items");
        dlq_mc_set s = {0};
        int rc = dlq_mc_load_file(name, path, (int)json_array_size(items), &s, &err);
        CHECK(rc == 0 && s.n == (int)json_array_size(items), "%s: %s", name, err.msg);
        int bad = 0;
        for (int i = 0; i < s.n && !rc; i++) {
            json_t *it = json_array_get(items, (size_t)i), *ctx = json_object_get(it, "ctx");
            const dlq_mc_item *x = &s.items[i];
            int ok = x->n == (int)json_array_size(json_object_get(it, "cont")) &&
                     x->gold == (int)json_integer_value(json_object_get(it, "gold"));
            for (int j = 0; ok && j < x->n; j++) {
                const char *c = json_is_string(ctx) ? json_string_value(ctx) : json_string_value(json_array_get(ctx, j));
                ok = !strcmp(x->ctx[j], c) && !strcmp(x->cont[j], json_string_value(json_array_get(json_object_get(it, "cont"), j)));
            }
            if (!ok && bad++ < 3) CHECK(0, "%s item %d: requests differ from lm-eval's (ctx '%s')", name, i, x->ctx[0]);
        }
        CHECK(bad == 0, "%s: %d items differ", name, bad);
        dlq_mc_set_free(&s);
    }
    /* MMLU: prompts and the shots kept after dropping */
    /* the fixture's questions are the first 8 test rows of each subject: the repo's sample (data/tasks) has them */
    const char *mdir = t_shared("tasks/mmlu");
    if (!mdir) mdir = "data/tasks/mmlu";
    json_t *mm = json_object_get(root, "mmlu");
    char subjects[1024] = "";
    size_t i;
    json_t *it;
    int per = 0;
    json_array_foreach(mm, i, it) {
        const char *sub = json_string_value(json_object_get(it, "subject"));
        if (!strstr(subjects, sub)) snprintf(subjects + strlen(subjects), sizeof subjects - strlen(subjects), "%s%s", i ? "," : "", sub);
        if (!strcmp(sub, json_string_value(json_object_get(json_array_get(mm, 0), "subject")))) per++;
    }
    dlq_mc_set s = {0};
    int rc = dlq_mmlu_load(mdir, "test", subjects, 5, per, m->tok, m->cfg.max_seq, &s, &err);
    CHECK(rc == 0 && s.n == (int)json_array_size(mm), "mmlu load: %s (%d vs %zu)", err.msg, s.n, json_array_size(mm));
    /* dlq_mmlu_load goes in subject-table order; match by subject + index */
    int bad = 0, dropped = 0;
    json_array_foreach(mm, i, it) {
        int si = dlq_mmlu_subject_index(json_string_value(json_object_get(it, "subject")));
        int idx = (int)json_integer_value(json_object_get(it, "index")), seen = 0, found = 0;
        for (int j = 0; j < s.n; j++)
            if (s.items[j].subject == si && seen++ == idx) {
                found = 1;
                int shots = (int)json_integer_value(json_object_get(it, "shots"));
                dropped += shots < 5;
                if ((strcmp(s.items[j].ctx[0], json_string_value(json_object_get(it, "ctx"))) || s.items[j].shots != shots ||
                     s.items[j].gold != (int)json_integer_value(json_object_get(it, "gold"))) && bad++ < 3)
                    CHECK(0, "mmlu %s %d: prompt/shots (%d vs %d) differ", dlq_mmlu_subject(si), idx, s.items[j].shots, shots);
                break;
            }
        CHECK(found, "mmlu item %zu found", i);
    }
    CHECK(bad == 0, "%d MMLU prompts differ", bad);
    CHECK(dropped > 0, "the fixture exercises shot dropping (%d questions)", dropped);
    dlq_mc_set_free(&s);
}

static void test_fp32_vs_bf16(const dlq_model *m, json_t *root) {
    char dir[] = "/tmp/dlq_test_eval_f32_XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return; }
    char out[300];
    snprintf(out, sizeof out, "%s/m", dir);
    dlq_hf_tensor *t;
    size_t n;
    dlq_model *f = NULL;
    int rc = dlq_hf_tensors_from_model(m, &t, &n, &err);
    if (!rc) rc = dlq_hf_write_model(out, &m->cfg, t, n, DLQ_F32, MODEL, &err);
    if (!rc) free(t);
    if (!rc) rc = dlq_model_load(&f, out, NULL, &err);
    CHECK(rc == 0, "fp32 copy: %s", err.msg);
    if (!rc) {
        dlq_mc_set s = {0};
        ref_item *r = load_ref(root, &s, "arc_easy");
        int full = s.n;
        s.n = s.n < 25 ? s.n : 25;
        double *a = score(m, &s, 8), *b = score(f, &s, 8);
        if (a && b) {
            double d = 0;
            int same = 1;
            for (int i = 0, o = 0; i < s.n; o += s.items[i].n, i++) {
                for (int j = 0; j < s.items[i].n; j++) d = fmax(d, fabs(a[o + j] - b[o + j]));
                same &= dlq_mc_argmax(&s.items[i], a + o, 0) == dlq_mc_argmax(&s.items[i], b + o, 0);
            }
            /* same weight values (bf16 -> fp32 is exact); only the kernels' summation order may differ */
            CHECK(d <= 1e-3 && same, "fp32 vs bf16 storage: max diff %.3e, predictions %s", d, same ? "same" : "differ");
            printf("fp32 vs bf16 storage: max |diff| = %.2e\n", d);
        }
        free(a);
        free(b);
        free(r);
        s.n = full;
        dlq_mc_set_free(&s);
        dlq_model_destroy(f);
    }
    char p[400];
    const char *files[] = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.model",
                           "tokenizer_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", out, files[i]);
        unlink(p);
    }
    rmdir(out);
    rmdir(dir);
}

/* a context longer than the model's window is left-truncated (lm-eval);
 * scoring stays finite and independent of the batch */
static void test_long(const dlq_model *m) {
    size_t L = 6000;
    char *big = malloc(L + 32);
    for (size_t i = 0; i < L; i++) big[i] = "the cat sat on a mat. "[i % 22];
    strcpy(big + L, "Answer:");
    const char *ctx[2] = {big, big}, *k[2] = {" yes", " no"}, *ch[2] = {"yes", "no"};
    const char *c2[2] = {"Short question?\nAnswer:", "Short question?\nAnswer:"};
    dlq_mc_set s = {0};
    dlq_mc_set_add(&s, 2, ctx, k, ch, 0, &err);
    dlq_mc_set_add(&s, 2, c2, k, ch, 1, &err);
    double *a = score(m, &s, 1), *b = score(m, &s, 8);
    if (a && b)
        CHECK(isfinite(a[0]) && isfinite(a[1]) && a[0] < 0 && fabs(a[0] - b[0]) < 1e-4 && fabs(a[3] - b[3]) < 1e-4,
              "long context: %g %g vs %g", a[0], a[1], b[0]);
    free(a);
    free(b);
    free(big);
    dlq_mc_set_free(&s);
}

int main(void) {
    test_llm_adapters();
    test_native();
    test_files();
    test_metrics();
    dlq_model *m = NULL;
    if (dlq_model_load(&m, MODEL, NULL, &err)) {
        SKIP("%s: %s", MODEL, err.msg);
        return T_DONE();
    }
    test_encode(m->tok);
    json_error_t je;
    json_t *root = json_load_file(REF, 0, &je);
    CHECK(root != NULL, "%s: %s", REF, je.text);
    if (root) {
        test_vs_lmeval(m, root);
        test_readers_vs_fixture(m, root);
        test_fp32_vs_bf16(m, root);
    }
    test_long(m);
    json_decref(root);
    dlq_model_destroy(m);
    return T_DONE();
}
