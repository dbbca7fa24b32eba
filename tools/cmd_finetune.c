/* dlqat finetune: full fine-tuning or LoRA (PEFT) on text, Alpaca or token data. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "export/export.h"
#include "core/mapfile.h"
#include "io/hf_write.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "train/trainer.h"

static void usage(void) {
    printf("usage: dlqat finetune --model M --data FILE --out DIR [options]\n"
           "  --mode full|lora      full fine-tuning, or LoRA adapters on a frozen base (default lora)\n"
           "  --rank R --alpha A    LoRA rank and alpha (scaling alpha/R; default 16, 16)\n"
           "  --targets LIST        LoRA modules (default q,k,v,o,gate,up,down)\n"
           "  --lora-init kaiming|gaussian   A's init (PEFT's default kaiming-uniform); B starts at 0\n"
           "  --data-format auto|text|alpaca|tokens\n"
           "  --loss ce|kl|ce+kl    cross-entropy on the data, KL to the base model's distribution, or both\n"
           "  --steps N --batch B --seq T --accum K   steps, sequences per micro-batch, tokens, micro-batches per step\n"
           "  --lr LR --schedule constant|linear|cosine --warmup N --min-lr-ratio R\n"
           "  --weight-decay WD --clip C --eps E --seed S\n"
           "  --val-fraction F --eval-every N --eval-batches N\n"
           "  --ckpt-every N        checkpoint every N steps (also on SIGINT/SIGTERM and at the end)\n"
           "  --resume              continue from DIR/checkpoints\n"
           "  --recompute           recompute activations per layer in the backward (less memory)\n"
           "  --merge               LoRA: also write the merged model to DIR/merged\n"
           "  --dtype f32|bf16|f16  dtype of written model weights (default f32)\n"
           "Writes DIR/model (full) or DIR/adapter (+ DIR/merged), DIR/metrics.jsonl, DIR/checkpoints, DIR/run.json.\n");
}

static int write_outputs_from(const dlq_tmodel *tm, const dlq_model *m, const char *out, int merge, dlq_dtype dt,
                              const dlq_tmodel_opts *o, const char *tsrc, dlq_err *err) {
    char dir[1200];
    int rc = 0;
    const dlq_params *P = &tm->params;
    if (o->mode == DLQ_MODE_FULL) {
        dlq_hf_tensor *ts = calloc((size_t)P->n, sizeof *ts);
        size_t n = 0;
        for (int i = 0; i < P->n; i++) {
            const dlq_ptensor *t = &P->t[i];
            const dlq_tensor_info *dummy = NULL;
            (void)dummy;
            snprintf(ts[n].name, sizeof ts[n].name, "%s", t->name);
            ts[n].data = P->w + t->off;
            ts[n].dtype = DLQ_F32;
            if (strstr(t->name, "norm.weight") || strstr(t->name, ".bias")) { ts[n].ndim = 1; ts[n].shape[0] = (int64_t)t->n; }
            else {
                int64_t rows = strstr(t->name, "embed_tokens") || strstr(t->name, "lm_head") ? tm->cfg.vocab_size : 0;
                if (!rows) {
                    /* find the projection to get its shape */
                    for (int l = 0; l < tm->cfg.n_layers && !rows; l++)
                        for (int p = 0; p < DLQ_N_PROJ; p++)
                            if (tm->layers[l].p[p].w == P->w + t->off) rows = tm->layers[l].p[p].out;
                }
                ts[n].ndim = 2;
                ts[n].shape[0] = rows;
                ts[n].shape[1] = (int64_t)t->n / rows;
            }
            n++;
        }
        snprintf(dir, sizeof dir, "%s/model", out);
        rc = dlq_hf_write_model(dir, &tm->cfg, ts, n, dt, tsrc, err);
        free(ts);
        if (!rc) fprintf(stderr, "[finetune] wrote %s\n", dir);
        return rc;
    }
    /* LoRA: PEFT adapter */
    dlq_peft_config pc;
    memset(&pc, 0, sizeof pc);
    pc.r = o->lora_r;
    pc.lora_alpha = o->lora_alpha;
    snprintf(pc.base_model, sizeof pc.base_model, "%s", m->path);
    for (int p = 0; p < DLQ_N_PROJ; p++)
        if (o->targets >> p & 1u) snprintf(pc.target_modules[pc.n_targets++], 32, "%s", dlq_proj_names[p]);
    dlq_hf_tensor *ts = calloc((size_t)P->n, sizeof *ts);
    size_t n = 0;
    for (int l = 0; l < tm->cfg.n_layers; l++)
        for (int p = 0; p < DLQ_N_PROJ; p++) {
            const dlq_tlinear *T = &tm->layers[l].p[p];
            if (T->r <= 0) continue;
            dlq_peft_tensor_name(ts[n].name, sizeof ts[n].name, l, dlq_proj_names[p], 'A');
            ts[n].data = T->A; ts[n].dtype = DLQ_F32; ts[n].ndim = 2; ts[n].shape[0] = T->r; ts[n].shape[1] = T->in;
            n++;
            dlq_peft_tensor_name(ts[n].name, sizeof ts[n].name, l, dlq_proj_names[p], 'B');
            ts[n].data = T->B; ts[n].dtype = DLQ_F32; ts[n].ndim = 2; ts[n].shape[0] = T->out; ts[n].shape[1] = T->r;
            n++;
        }
    snprintf(dir, sizeof dir, "%s/adapter", out);
    rc = dlq_peft_write_adapter(dir, &pc, ts, n, err);
    free(ts);
    if (rc) return rc;
    fprintf(stderr, "[finetune] wrote %s (PEFT LoRA adapter)\n", dir);
    if (!merge) return DLQ_OK;
    /* merged model: base tensors, with W0 + scale*B A for the adapted projections */
    dlq_hf_tensor *bt;
    size_t nb;
    if ((rc = dlq_hf_tensors_from_model(m, &bt, &nb, err))) return rc;
    float **bufs = calloc(nb, sizeof *bufs);
    for (int l = 0; l < tm->cfg.n_layers && !rc; l++)
        for (int p = 0; p < DLQ_N_PROJ; p++) {
            const dlq_tlinear *T = &tm->layers[l].p[p];
            if (T->r <= 0) continue;
            char name[160];
            dlq_hf_tensor_name(name, sizeof name, l, dlq_proj_names[p], "weight");
            for (size_t i = 0; i < nb; i++)
                if (!strcmp(bt[i].name, name)) {
                    bufs[i] = malloc((size_t)(T->out * T->in) * sizeof(float));
                    dlq_tmodel_effective_weight(tm, l, p, bufs[i]);
                    bt[i].data = bufs[i];
                    bt[i].dtype = DLQ_F32;
                }
        }
    snprintf(dir, sizeof dir, "%s/merged", out);
    rc = dlq_hf_write_model(dir, &tm->cfg, bt, nb, dt, tsrc, err);
    for (size_t i = 0; i < nb; i++) free(bufs[i]);
    free(bufs);
    free(bt);
    if (!rc) fprintf(stderr, "[finetune] wrote %s (merged model)\n", dir);
    return rc;
}

/* the tokenizer goes with the written models: the HF folder's own files, or the model's
   tokenizer in HF form (a llama2.c checkpoint's tok512.model, a .dlq's embedded copy) */
static int write_outputs(const dlq_tmodel *tm, const dlq_model *m, const char *out, int merge, dlq_dtype dt,
                         const dlq_tmodel_opts *o, dlq_err *err) {
    char scratch[1100] = "";
    const char *tsrc = NULL;
    if (m->format == DLQ_FMT_HF) tsrc = m->path;
    else {
        int rc = dlq_export_tokenizer_folder(m, scratch, sizeof scratch, err);
        if (rc) return rc;
        if (scratch[0]) tsrc = scratch;
    }
    int rc = write_outputs_from(tm, m, out, merge, dt, o, tsrc, err);
    dlq_export_tokenizer_folder_remove(scratch);
    return rc;
}

int cmd_finetune(int argc, char **argv) {
    cli_args a = {argc, argv, 0, "finetune", 0};
    const char *model = NULL, *data = NULL, *out = NULL, *fmt = "auto", *tok = NULL;
    dlq_tmodel_opts o = {.mode = DLQ_MODE_LORA, .lora_r = 16, .lora_alpha = 16, .targets = 0x7f, .B = 16, .T = 256,
                         .seed = 0, .lora_init = DLQ_LORA_KAIMING, .weight_decay = 0.0f};
    dlq_train_cfg tc;
    dlq_train_cfg_default(&tc);
    tc.sched.lr = 2e-4f;
    long long steps = 100;
    int resume = 0, merge = 0, seq_set = 0;
    double val_fraction = 0.05;
    dlq_dtype dt = DLQ_F32;
    dlq_err err = {0};
    while (cli_next(&a)) {
        if (cli_is(&a, "--help", "-h")) { usage(); return 0; }
        else if (cli_is(&a, "--model", "-m")) model = cli_str(&a);
        else if (cli_is(&a, "--data", NULL)) data = cli_str(&a);
        else if (cli_is(&a, "--data-format", NULL)) fmt = cli_str(&a);
        else if (cli_is(&a, "--loss", NULL)) {
            const char *s = cli_str(&a);
            if (dlq_loss_parse(s, &o.loss)) { fprintf(stderr, "dlqat finetune: --loss must be ce, kl or ce+kl, got '%s'\n", s); return 2; }
        }
        else if (cli_is(&a, "--out", "-o")) out = cli_str(&a);
        else if (cli_is(&a, "--tokenizer", NULL)) tok = cli_str(&a);
        else if (cli_is(&a, "--mode", NULL)) {
            const char *s = cli_str(&a);
            if (!strcmp(s, "full")) o.mode = DLQ_MODE_FULL;
            else if (!strcmp(s, "lora")) o.mode = DLQ_MODE_LORA;
            else { fprintf(stderr, "dlqat finetune: --mode must be full or lora, got '%s'\n", s); return 2; }
        } else if (cli_is(&a, "--rank", "-r")) o.lora_r = (int)cli_int(&a, 1, 4096);
        else if (cli_is(&a, "--alpha", NULL)) o.lora_alpha = (float)cli_num(&a, 1e-6, 1e6);
        else if (cli_is(&a, "--targets", NULL)) {
            if (dlq_parse_targets(cli_str(&a), &o.targets, &err)) { fprintf(stderr, "dlqat finetune: %s\n", err.msg); return 2; }
        } else if (cli_is(&a, "--lora-init", NULL)) {
            const char *s = cli_str(&a);
            if (!strcmp(s, "kaiming")) o.lora_init = DLQ_LORA_KAIMING;
            else if (!strcmp(s, "gaussian")) o.lora_init = DLQ_LORA_GAUSSIAN;
            else { fprintf(stderr, "dlqat finetune: --lora-init must be kaiming or gaussian\n"); return 2; }
        } else if (cli_is(&a, "--steps", NULL)) steps = cli_int(&a, 1, 1LL << 40);
        else if (cli_is(&a, "--batch", NULL)) o.B = (int)cli_int(&a, 1, 1 << 16);
        else if (cli_is(&a, "--seq", NULL)) { o.T = (int)cli_int(&a, 2, 1 << 20); seq_set = 1; }
        else if (cli_is(&a, "--accum", NULL)) tc.accum = (int)cli_int(&a, 1, 1 << 16);
        else if (cli_is(&a, "--lr", NULL)) tc.sched.lr = (float)cli_num(&a, 0, 10);
        else if (cli_is(&a, "--schedule", NULL)) {
            if (dlq_schedule_parse(&tc.sched, cli_str(&a))) { fprintf(stderr, "dlqat finetune: --schedule must be constant, linear or cosine\n"); return 2; }
        } else if (cli_is(&a, "--warmup", NULL)) tc.sched.warmup = cli_int(&a, 0, 1LL << 40);
        else if (cli_is(&a, "--min-lr-ratio", NULL)) tc.sched.min_ratio = (float)cli_num(&a, 0, 1);
        else if (cli_is(&a, "--weight-decay", NULL)) o.weight_decay = (float)cli_num(&a, 0, 10);
        else if (cli_is(&a, "--clip", NULL)) tc.clip = (float)cli_num(&a, 0, 1e9);
        else if (cli_is(&a, "--eps", NULL)) tc.eps = (float)cli_num(&a, 0, 1);
        else if (cli_is(&a, "--seed", NULL)) o.seed = (uint64_t)cli_int(&a, 0, 1LL << 62);
        else if (cli_is(&a, "--val-fraction", NULL)) val_fraction = cli_num(&a, 0, 0.9);
        else if (cli_is(&a, "--eval-every", NULL)) tc.eval_every = cli_int(&a, 0, 1LL << 40);
        else if (cli_is(&a, "--eval-batches", NULL)) tc.eval_batches = cli_int(&a, 0, 1LL << 40);
        else if (cli_is(&a, "--ckpt-every", NULL)) tc.ckpt_every = cli_int(&a, 0, 1LL << 40);
        else if (cli_is(&a, "--resume", NULL)) resume = 1;
        else if (cli_is(&a, "--recompute", NULL)) o.recompute = 1;
        else if (cli_is(&a, "--merge", NULL)) merge = 1;
        else if (cli_is(&a, "--dtype", NULL)) {
            const char *s = cli_str(&a);
            if (!strcmp(s, "f32")) dt = DLQ_F32;
            else if (!strcmp(s, "bf16")) dt = DLQ_BF16;
            else if (!strcmp(s, "f16")) dt = DLQ_F16;
            else { fprintf(stderr, "dlqat finetune: --dtype must be f32, bf16 or f16\n"); return 2; }
        } else cli_unknown(&a);
    }
    if (!model || !data || !out) { fprintf(stderr, "dlqat finetune: --model, --data and --out are required\n"); return 2; }
    if (merge && o.mode != DLQ_MODE_LORA) { fprintf(stderr, "dlqat finetune: --merge applies to --mode lora\n"); return 2; }
    dlq_model *m;
    if (cli_load_model(&m, model, tok, NULL)) return 1;
    int rc = 1;
    dlq_dataset *ds = NULL;
    dlq_tmodel *tm = NULL;
    cli_trainlog lg = {NULL, "finetune", 0};
    double t0 = cli_now();
    dlq_data_opts dopt;
    dlq_data_opts_default(&dopt);
    dopt.T = o.T;
    dopt.val_fraction = val_fraction;
    dopt.seed = o.seed;
    if (mkdir(out, 0755) && !dlq_path_is_dir(out)) { fprintf(stderr, "dlqat finetune: cannot create %s\n", out); goto done; }
    {   /* token files carry their row length: take it unless --seq was given */
        const char *det = strcmp(fmt, "auto") ? fmt : dlq_data_detect(data, &err);
        if (!det) { fprintf(stderr, "dlqat finetune: %s\n", err.msg); goto done; }
        if (!strcmp(det, "tokens") && !seq_set) dopt.T = 0;
    }
    if (dlq_data_open(&ds, data, fmt, m->tok, &dopt, &err)) { fprintf(stderr, "dlqat finetune: %s\n", err.msg); goto done; }
    o.T = dlq_data_T(ds);
    for (int i = 0; i < (int)dlq_data_n_skipped(ds) && dlq_data_skip_msg(ds, i); i++) fprintf(stderr, "skipped: %s\n", dlq_data_skip_msg(ds, i));
    if (dlq_data_n_skipped(ds)) fprintf(stderr, "[finetune] %lld malformed records skipped\n", (long long)dlq_data_n_skipped(ds));
    if (dlq_tmodel_create(&tm, m, &o, &err)) { fprintf(stderr, "dlqat finetune: %s\n", err.msg); goto done; }
    size_t tr = dlq_params_trainable(&tm->params);
    fprintf(stderr, "[finetune] %s on %s (%s): %lld training / %lld validation rows of %d tokens\n",
            o.mode == DLQ_MODE_FULL ? "full fine-tuning" : "LoRA", data, dlq_data_format(ds),
            (long long)dlq_data_n_train(ds), (long long)dlq_data_n_val(ds), o.T);
    fprintf(stderr, "[finetune] trainable parameters: %zu of %lld (%.4f%%); activations %.1f MiB\n", tr,
            (long long)dlq_model_n_params(m), 100.0 * (double)tr / (double)dlq_model_n_params(m), tm->act_bytes / 1048576.0);
    char ckdir[1200], mpath[1200];
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", out);
    snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", out);
    dlq_train_state st;
    memset(&st, 0, sizeof st);
    if (resume) {
        char phase[64];
        if (dlq_train_resume(tm, ds, ckdir, NULL, &st, phase, sizeof phase, &err)) { fprintf(stderr, "dlqat finetune: --resume: %s\n", err.msg); goto done; }
        fprintf(stderr, "[finetune] resumed at step %lld from %s\n", (long long)st.step, ckdir);
    }
    if (dlq_metrics_open(&lg.metrics, mpath, resume ? st.step : -1, NULL, &err)) { fprintf(stderr, "dlqat finetune: %s\n", err.msg); goto done; }
    volatile sig_atomic_t stop = 0;
    dlq_install_stop_signals(&stop, &err);
    char meta[512];
    snprintf(meta, sizeof meta, "{\"mode\": \"%s\", \"rank\": %d, \"alpha\": %g, \"batch\": %d, \"seq\": %d, \"seed\": %llu}",
             o.mode == DLQ_MODE_FULL ? "full" : "lora", o.lora_r, o.lora_alpha, o.B, o.T, (unsigned long long)o.seed);
    tc.phase = "train";
    tc.step_begin = 0;
    tc.step_end = steps;
    tc.sched.total = steps;
    tc.ckpt_dir = ckdir;
    tc.run_meta = meta;
    tc.stop = &stop;
    tc.on_step = cli_log_step;
    tc.user = &lg;
    if (dlq_train_run(tm, ds, &tc, &st, &err)) { fprintf(stderr, "\ndlqat finetune: %s\n", err.msg); goto done; }
    if (st.interrupted) {
        fprintf(stderr, "\n[finetune] interrupted at step %lld: checkpoint saved in %s; continue with --resume\n", (long long)st.step, ckdir);
        rc = 130;
        goto done;
    }
    if (write_outputs(tm, m, out, merge, dt, &o, &err)) { fprintf(stderr, "dlqat finetune: %s\n", err.msg); goto done; }
    json_t *res = json_pack("{s:s, s:s, s:s, s:I, s:i, s:i, s:f, s:I, s:f, s:f, s:I}", "mode",
                            o.mode == DLQ_MODE_FULL ? "full" : "lora", "model", model, "data", data, "steps", (json_int_t)st.step,
                            "batch", o.B, "seq", o.T, "final_loss", st.last_loss,
                            "trainable_params", (json_int_t)tr, "wall_s", cli_now() - t0, "lr", (double)tc.sched.lr,
                            "peak_rss_kb", (json_int_t)cli_peak_rss_kb());
    /* no held-out rows (--val-fraction 0): no validation loss (JSON has no NaN) */
    json_object_set_new(res, "val_loss", isfinite(st.last_val_loss) ? json_real(st.last_val_loss) : json_null());
    json_object_set_new(res, "loss", json_string(dlq_loss_name(o.loss)));
    char *s = json_dumps(res, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    char rpath[1200];
    snprintf(rpath, sizeof rpath, "%s/run.json", out);
    rc = cli_write_json(rpath, s) ? 1 : 0;
    printf("%s\n", s);
    free(s);
    json_decref(res);
done:
    if (lg.metrics) dlq_metrics_close(lg.metrics, &err);
    dlq_tmodel_destroy(tm);
    if (ds) dlq_data_close(ds);
    dlq_model_destroy(m);
    return rc;
}
