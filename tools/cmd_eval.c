/* dlqat eval --model M --tasks piqa,arc_easy,...|mmlu|wikitext2 --data DIR
 *            [--limit N] [--shots K] [--batch B] [--json FILE] [--samples FILE] */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval/eval.h"

static void progress(const char *task, int64_t done, int64_t total, double el, void *user) {
    cli_progress(task, done, total, el, 1.0, "items/s");
}

static json_t *task_json(const dlq_task_result *t) {
    json_t *o = json_object();
    if (t->kind == DLQ_RES_PPL) {
        json_object_set_new(o, "ppl", json_real(t->ppl));
        json_object_set_new(o, "nll", json_real(t->nll));
        json_object_set_new(o, "tokens", json_integer(t->tokens));
        json_object_set_new(o, "windows", json_integer(t->windows));
        json_object_set_new(o, "ppl_plain", json_real(t->ppl_plain));
        json_object_set_new(o, "nll_plain", json_real(t->nll_plain));
        json_object_set_new(o, "tokens_plain", json_integer(t->tokens_plain));
        json_object_set_new(o, "windows_plain", json_integer(t->windows_plain));
        json_object_set_new(o, "ctx", json_integer(t->ctx));
        json_object_set_new(o, "seconds", json_real(t->seconds));
        return o;
    }
    const char *alias = t->name;
    if (t->kind != DLQ_RES_TASK && !strncmp(alias, "mmlu_", 5)) alias += 5;
    json_object_set_new(o, "alias", json_string(alias));
    json_object_set_new(o, "acc", json_real(t->acc));
    json_object_set_new(o, "acc_stderr", json_real(t->acc_stderr));
    if (t->has_norm) {
        json_object_set_new(o, "acc_norm", json_real(t->acc_norm));
        json_object_set_new(o, "acc_norm_stderr", json_real(t->acc_norm_stderr));
    }
    json_object_set_new(o, "n", json_integer(t->n));
    if (!strncmp(t->name, "mmlu", 4)) {
        json_object_set_new(o, "shots", json_integer(t->shots));
        json_object_set_new(o, "mean_shots_kept", json_real(t->mean_shots));
    }
    if (t->kind == DLQ_RES_TASK) {
        json_object_set_new(o, "seconds", json_real(t->seconds));
        json_object_set_new(o, "items_per_s", json_real(t->items_per_s));
    }
    return o;
}

static int write_samples(const char *path, const dlq_eval_result *r) {
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "dlqat eval: cannot write %s\n", path); return 1; }
    for (int i = 0; i < r->n; i++) {
        const dlq_task_result *t = &r->res[i];
        if (!t->items) continue;
        for (int64_t j = 0; j < t->n; j++) {
            const dlq_item_result *x = &t->items[j];
            fprintf(f, "{\"task\": \"%s\", \"doc_id\": %lld, \"gold\": %d, \"pred\": %d, \"pred_norm\": %d, \"ll\": [", t->name,
                    (long long)j, x->gold, x->pred, x->pred_norm);
            for (int c = 0; c < x->n; c++) fprintf(f, "%s%.17g", c ? ", " : "", x->ll[c]);
            fprintf(f, "]}\n");
        }
    }
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad) fprintf(stderr, "dlqat eval: error writing %s\n", path);
    return bad;
}

int cmd_eval(int argc, char **argv) {
    cli_args a = {argc, argv, 0, "eval", 0};
    const char *model = NULL, *tok = NULL, *adapter = NULL, *json = NULL, *samples = NULL;
    dlq_eval_opts o = dlq_eval_defaults();
    while (cli_next(&a)) {
        if (cli_is(&a, "--help", "-h")) {
            printf("usage: dlqat eval --model M [--tasks LIST] [--data DIR] [options]\n"
                   "  --tasks LIST     comma list of piqa, arc_easy, arc_challenge, boolq, openbookqa,\n"
                   "                   winogrande, social_iqa, hellaswag, mmlu, wikitext2\n"
                   "                   (default: the seven commonsense tasks, without hellaswag)\n"
                   "  --data DIR       task files, lm-eval-style JSONL: DIR/<task>.jsonl, DIR/<task>/{test,validation}.jsonl;\n"
                   "                   or LLM-Adapters JSON: DIR/<task>/test.json, DIR/dataset/<task>/test.json (its\n"
                   "                   folder names: ARC-Challenge, ARC-Easy, social_i_qa ...), DIR/<task>/test_shared.json;\n"
                   "                   MMLU CSVs in DIR/mmlu/{dev,val,test}. Default data/tasks: the repo's 100-item\n"
                   "                   sample (a smoke test); the full sets: --data ../shared/data/tasks\n"
                   "  --limit N        first N items of each task (MMLU: of each subject; wikitext2: windows)\n"
                   "  --shots K        MMLU examples from dev (default 5; dropped while the prompt exceeds the context)\n"
                   "  --batch B        items whose contexts run in one forward pass (default 8)\n"
                   "  --mmlu-split S   test (default) or val\n"
                   "  --mmlu-subjects L  comma list of MMLU subjects (default all 57)\n"
                   "  --wikitext FILE  WikiText-2 raw test file (default DIR/../text/wikitext-2-raw/wiki.test.raw*)\n"
                   "  --ctx N          perplexity window (default: the model's context)\n"
                   "  --tokenizer F    tokenizer file; --adapter DIR: merge a PEFT LoRA adapter first\n"
                   "  --json FILE      lm-eval-shaped results: results.<task>.{acc,acc_stderr,acc_norm,...}\n"
                   "  --samples FILE   per-item log-likelihoods as JSON Lines\n"
                   "Protocols: docs/eval.md (lm-evaluation-harness 0.4.x conventions).\n");
            return 0;
        } else if (cli_is(&a, "--model", "-m")) model = cli_str(&a);
        else if (cli_is(&a, "--tokenizer", NULL)) tok = cli_str(&a);
        else if (cli_is(&a, "--adapter", NULL)) adapter = cli_str(&a);
        else if (cli_is(&a, "--tasks", NULL)) o.tasks = cli_str(&a);
        else if (cli_is(&a, "--data", NULL)) o.data_dir = cli_str(&a);
        else if (cli_is(&a, "--limit", NULL)) o.limit = (int)cli_int(&a, 1, 1 << 30);
        else if (cli_is(&a, "--shots", NULL)) o.shots = (int)cli_int(&a, 0, 64);
        else if (cli_is(&a, "--batch", NULL)) o.batch = (int)cli_int(&a, 1, 4096);
        else if (cli_is(&a, "--mmlu-split", NULL)) o.mmlu_split = cli_str(&a);
        else if (cli_is(&a, "--mmlu-subjects", NULL)) o.mmlu_subjects = cli_str(&a);
        else if (cli_is(&a, "--wikitext", NULL)) o.wikitext = cli_str(&a);
        else if (cli_is(&a, "--ctx", NULL)) o.ctx = (int)cli_int(&a, 2, 1 << 20);
        else if (cli_is(&a, "--json", NULL)) json = cli_str(&a);
        else if (cli_is(&a, "--samples", NULL)) samples = cli_str(&a);
        else cli_unknown(&a);
    }
    if (a.bad) return 2;
    if (!model) { fprintf(stderr, "dlqat eval: --model is required\n"); return 2; }
    if (strcmp(o.mmlu_split, "test") && strcmp(o.mmlu_split, "val")) {
        fprintf(stderr, "dlqat eval: --mmlu-split must be test or val, not '%s'\n", o.mmlu_split);
        return 2;
    }
    dlq_model *m;
    if (cli_load_model(&m, model, tok, adapter)) return 1;
    if (!m->tok) {
        fprintf(stderr, "dlqat eval: %s has no tokenizer; pass --tokenizer FILE\n", model);
        dlq_model_destroy(m);
        return 1;
    }
    o.progress = progress;
    o.keep_items = samples != NULL;
    dlq_err err = {0};
    dlq_eval_result r;
    if (dlq_eval_tasks(m, m->tok, &o, &r, &err)) {
        fprintf(stderr, "dlqat eval: %s\n", err.msg);
        dlq_model_destroy(m);
        return 1;
    }
    printf("| task | n | shots | acc | ± | acc_norm | ± | items/s |\n|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < r.n; i++) {
        const dlq_task_result *t = &r.res[i];
        if (t->kind == DLQ_RES_SUBTASK) continue;
        if (t->kind == DLQ_RES_PPL) {
            printf("| wikitext2 ppl (GPTQ join / plain file), ctx %d | %lld / %lld tokens | | %.4f | | %.4f | | %.0f tok/s |\n",
                   t->ctx, (long long)t->tokens, (long long)t->tokens_plain, t->ppl, t->ppl_plain, t->items_per_s);
            continue;
        }
        char shots[32] = "0", norm[32] = "", normse[32] = "", ips[32] = "";
        if (!strncmp(t->name, "mmlu", 4)) snprintf(shots, sizeof shots, "%d (%.2f kept)", t->shots, t->mean_shots);
        if (t->has_norm) {
            snprintf(norm, sizeof norm, "%.4f", t->acc_norm);
            snprintf(normse, sizeof normse, "%.4f", t->acc_norm_stderr);
        }
        if (t->kind == DLQ_RES_TASK) snprintf(ips, sizeof ips, "%.1f", t->items_per_s);
        printf("| %s%s | %lld | %s | %.4f | %.4f | %s | %s | %s |\n", t->kind == DLQ_RES_GROUP ? " - " : "", t->name,
               (long long)t->n, shots, t->acc, t->acc_stderr, norm, normse, ips);
    }
    int rc = 0;
    if (json) {
        json_t *root = json_object(), *res = json_object(), *nshot = json_object(), *ns = json_object(),
               *groups = json_object(), *cfg = json_object();
        json_t *cats = json_array();
        for (int i = 0; i < r.n; i++) {
            const dlq_task_result *t = &r.res[i];
            json_object_set_new(res, t->name, task_json(t));
            if (t->kind == DLQ_RES_PPL) continue;
            json_object_set_new(nshot, t->name, json_integer(t->shots));
            json_object_set_new(ns, t->name, json_pack("{s:I}", "effective", (json_int_t)t->n));
            if (t->kind == DLQ_RES_GROUP) {
                json_array_append_new(cats, json_string(t->name));
                json_t *subs = json_array();
                for (int j = 0; j < r.n; j++)
                    if (r.res[j].kind == DLQ_RES_SUBTASK) {
                        int si = dlq_mmlu_subject_index(r.res[j].name + 5);
                        if (si >= 0 && !strcmp(t->name + 5, dlq_mmlu_category(si)))
                            json_array_append_new(subs, json_string(r.res[j].name));
                    }
                json_object_set_new(groups, t->name, subs);
            }
        }
        if (json_array_size(cats)) json_object_set_new(groups, "mmlu", cats);
        else json_decref(cats);
        json_object_set_new(cfg, "model", json_string(model));
        json_object_set_new(cfg, "model_format", json_string(dlq_model_format_name(m->format)));
        if (m->q_bits) {
            json_object_set_new(cfg, "quant_bits", json_integer(m->q_bits));
            json_object_set_new(cfg, "quant_group", json_integer(m->q_group));
            json_object_set_new(cfg, "quant_method", json_string(m->q_method));
        }
        json_object_set_new(cfg, "tasks", json_string(o.tasks ? o.tasks : "default"));
        json_object_set_new(cfg, "data", json_string(o.data_dir));
        json_object_set_new(cfg, "batch_size", json_integer(o.batch));
        json_object_set_new(cfg, "limit", o.limit > 0 ? json_integer(o.limit) : json_null());
        json_object_set_new(cfg, "mmlu_split", json_string(o.mmlu_split));
        json_object_set_new(cfg, "add_bos_token", json_boolean(dlq_tok_add_bos(m->tok)));
        json_object_set_new(cfg, "max_length", json_integer(m->cfg.max_seq));
        json_object_set_new(root, "results", res);
        json_object_set_new(root, "group_subtasks", groups);
        json_object_set_new(root, "n-shot", nshot);
        json_object_set_new(root, "n-samples", ns);
        json_object_set_new(root, "config", cfg);
        json_object_set_new(root, "total_evaluation_time_seconds", json_real(r.seconds));
        json_object_set_new(root, "peak_rss_kb", json_integer(cli_peak_rss_kb()));
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        rc |= cli_write_json(json, s);
        free(s);
        json_decref(root);
    }
    if (samples) rc |= write_samples(samples, &r);
    dlq_eval_result_free(&r);
    dlq_model_destroy(m);
    return rc ? 1 : 0;
}
