/* dlqat quantize: RTN, DL-QAT (docs/spec.md §1-4) and the baselines of
 * §5 (GPTQ, QA-LoRA, full QAT) in the same engine, written as a .dlq. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "core/mapfile.h"
#include "eval/ppl.h"
#include "quant/export.h"
#include "quant/gptq.h"
#include "quant/nf4.h"
#include "model/rotate.h"
#include "quant/rotlearn.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "train/trainer.h"

static void usage(void) {
    printf("usage: dlqat quantize --model M --bits N --group G|channel --out OUT.dlq [options]\n"
           "  --method M              rtn | dlqat (default) | gptq | qalora | qat (docs/baselines.md):\n"
           "                          rtn: min-max, no data; gptq: Hessian error compensation on --calib sequences;\n"
           "                          dlqat: phase 1 s,b then m + LoRA; qat: phase 1 s,b then every weight (full QAT);\n"
           "                          qalora: LoRA on group-pooled inputs over a frozen RTN/GPTQ base, all steps\n"
           "  --base rtn|gptq         starting quantization of the trained methods (default rtn)\n"
           "  --calib N --act-order --damp F --gptq-block N   GPTQ: calibration sequences of --seq tokens (128),\n"
           "                          decreasing-Hessian column order (static groups), dampening (0.01), block (128)\n"
           "  --recompute             recompute activations in the backward (less memory)\n"
           "  --method nf4-lora       QLoRA: NF4 base (--nf4-block N, 64; --double-quant) + LoRA kept beside it in the .dlq\n"
           "  --data FILE             training data (text, Alpaca JSON or token file; --data-format to force)\n"
           "  --phase1-steps N        phase 1: train scale s and offset b (default 1000)\n"
           "  --steps N               phase 2: train magnitude m and LoRA A, B jointly (default 1000)\n"
           "  --stages 2|3            3 = s,b -> m (--m-steps) -> A,B (--steps)\n"
           "  --phase2-sb             keep training s, b (at --lr-sb) in the later phases, beside m, A, B (or W)\n"
           "  --m-steps N             three-stage schedule: steps of the magnitude-only stage\n"
           "  --rank R --alpha A --targets LIST --lora-init kaiming|gaussian   (default 16, 16, all 7, kaiming)\n"
           "  --lr LR                 learning rate of every phase (default 2e-4); --lr-sb, --lr-m, --lr-ab override\n"
           "  --batch B --seq T --accum K --schedule constant|cosine|linear --warmup N --clip C --seed S\n"
           "  --clip-search           RTN init with a least-squares clipping search\n"
           "  --sym                   symmetric quantizer (offset b = 0, never trained)\n"
           "  --int-zero              keep b/s an integer (GPTQ-style integer zero point) through training\n"
           "  --lsq                   LSQ gradient scaling of s\n"
           "  --train-norms           train the RMSNorm weights too, with the weights of the last phase (LLM-QAT\n"
           "                          trains every weight; the paper's DL-QAT keeps norms frozen: off by default)\n"
           "  --train-embeddings      train the embedding and output head too (full precision, fp32 copies + Adam\n"
           "                          state: 3 x 4 bytes per weight of them), with the last phase; off by default\n"
           "  --rotate                rotate the model first (QuaRot-style, function unchanged): fold the RMSNorm weights\n"
           "                          into the projections, residual stream by a random Hadamard transform (--seed),\n"
           "                          v/o by one per head; the output has all-ones norms and an untied head\n"
           "  --rotate-steps N        then learn the residual rotation for N steps on --data (SpinQuant R1: Cayley\n"
           "                          steps so the RTN-quantized model matches the FP one under --loss; default 0)\n"
           "  --rotate-lr LR          step size of that learning (default 2e-2, cosine decay)\n"
           "  --rotate-heads          learn the per-head v/o rotations too (one per layer and kv head; SpinQuant R2)\n"
           "  --dampen L              oscillation dampening: + L * mean (clip(x) - round(x))^2 per matrix, x = (W' - b)/s\n"
           "                          (Nagel et al. 2022; gradient to W' only; not in the reported loss; default 0)\n"
           "  --loss ce|kl|ce+kl      objective: next-token cross-entropy, KL to the full-precision model's\n"
           "                          distribution (LLM-QAT distillation), or their sum (default ce)\n"
           );
    printf("  --eval-text FILE        perplexity text (default: the held-out slice of --data)\n"
           "  --eval-tokens FILE      perplexity on a token file instead (rows = windows; dlqat sample)\n"
           "  --ctx N --eval-windows N   perplexity window and window cap for --eval-text\n"
           "  --val-fraction F --eval-every N --ckpt-every N --resume --workdir DIR (default OUT.dlq.work)\n"
           "  --keep-work             keep the work folder (checkpoints, metrics.jsonl for dlqat plot) after a\n"
           "                          successful run; it is removed otherwise (never when --workdir is given)\n"
           "  --json FILE             write the run summary\n");
}

typedef struct evalset {
    const char *text;     /* --eval-text, or NULL: validation rows */
    const char *tokens;   /* --eval-tokens */
    int32_t *ids;
    size_t n;
    int ctx;
    int64_t max_windows;
    const dlq_dataset *ds;
    int B;
} evalset;

/* mean NLL of a model on the evaluation set */
static int evaluate(const dlq_model *m, const evalset *e, double *nll, int64_t *ntok, dlq_err *err) {
    if (e->tokens) {
        dlq_ppl_result r;
        int rc = dlq_ppl_eval_tokens(m, e->tokens, 8, e->max_windows, NULL, NULL, &r, err);
        if (rc) return rc;
        *nll = r.nll;
        *ntok = r.tokens;
        return DLQ_OK;
    }
    if (e->text) {
        dlq_ppl_result r;
        int rc = dlq_ppl_eval(m, e->ids, (int64_t)e->n, e->ctx, 1, e->max_windows, NULL, NULL, &r, err);
        if (rc) return rc;
        *nll = r.nll;
        *ntok = r.tokens;
        return DLQ_OK;
    }
    return dlq_eval_val_nll(m, e->ds, e->B, 0, nll, ntok, err);
}

static double lr_or(double v, double def) { return v > 0 ? v : def; }

typedef struct rot_prog { double t0; } rot_prog;
static void rot_progress(void *user, int64_t step, int64_t n, double loss) {
    (void)loss;
    rot_prog *g = user;
    cli_progress("rotate", step, n, cli_now() - g->t0, 1, "steps/s");
}

typedef struct gptq_prog { double t0; } gptq_prog;
static void gptq_progress(void *user, int layer, int n) {
    gptq_prog *g = user;
    cli_progress("gptq", layer, n, cli_now() - g->t0, 60, "layers/min");
}

/* GPTQ over tm on nseq calibration sequences (rounded up to whole batches)
 * drawn from the training stream, which is rewound afterwards so that a
 * trained method sees the same data as without GPTQ. */
static int run_gptq(dlq_tmodel *tm, dlq_dataset *ds, long long nseq, const dlq_gptq_opts *go, float **owned, dlq_err *err) {
    int B = tm->opt.B, T = tm->opt.T;
    int64_t nb = (nseq + B - 1) / B;
    dlq_data_pos pos;
    dlq_data_get_pos(ds, &pos);
    int32_t *tok = malloc((size_t)(nb * B * T) * sizeof(int32_t));
    dlq_batch bt;
    int rc = tok ? dlq_batch_alloc(&bt, B, T, err) : dlq_errf(err, DLQ_ENOMEM, "out of memory");
    if (rc) { free(tok); return rc; }
    for (int64_t k = 0; k < nb && !rc; k++) {
        rc = dlq_data_next(ds, &bt, err);
        if (!rc) memcpy(tok + k * B * T, bt.tokens, (size_t)(B * T) * sizeof(int32_t));
    }
    dlq_batch_free(&bt);
    if (!rc) rc = dlq_data_set_pos(ds, &pos, err);
    fprintf(stderr, "[quantize] GPTQ: %lld calibration sequences of %d tokens, block %d, dampening %g%s\n",
            (long long)(nb * B), T, go->blocksize, go->percdamp, go->act_order ? ", act-order (static groups)" : "");
    gptq_prog gp = {cli_now()};
    if (!rc) rc = dlq_gptq_model(tm, tok, nb * B, go, owned, gptq_progress, &gp, err);
    fprintf(stderr, "\n");
    free(tok);
    return rc;
}

int cmd_quantize(int argc, char **argv) {
    cli_args a = {argc, argv, 0, "quantize", 0};
    const char *model = NULL, *data = NULL, *fmt = "auto", *out = NULL, *json = NULL, *eval_text = NULL, *workdir = NULL,
               *tok = NULL, *method = "dlqat", *eval_tokens = NULL;
    dlq_tmodel_opts o = {.mode = DLQ_MODE_QUANT, .lora_r = 16, .lora_alpha = 16, .targets = 0x7f, .B = 16, .T = 256,
                         .qspec = {3, 128}, .lora_init = DLQ_LORA_KAIMING};
    dlq_train_cfg tc;
    dlq_train_cfg_default(&tc);
    long long p1 = 1000, p2 = 1000, msteps = 0, eval_windows = 0, rot_steps = 0;
    int rot_heads = 0;
    double rot_lr = 2e-2, rot_first = NAN, rot_last = NAN, t_rot = 0;
    int keep_work = 0;
    int stages = 2, resume = 0, ctx = 0, bits_set = 0, seq_set = 0, base_gptq = 0, phase2_sb = 0, rotate = 0;
    long long calib = 128;
    int nf4_block = 64, nf4_dq = 0;
    dlq_nf4_model nf4 = {0};
    dlq_gptq_opts gopt;
    dlq_gptq_opts_default(&gopt);
    double lr = 2e-4, lr_sb = 0, lr_m = 0, lr_ab = 0, val_fraction = 0.05;
    dlq_err err = {0};
    while (cli_next(&a)) {
        if (cli_is(&a, "--help", "-h")) { usage(); return 0; }
        else if (cli_is(&a, "--model", "-m")) model = cli_str(&a);
        else if (cli_is(&a, "--method", NULL)) {
            method = cli_str(&a);
            if (strcmp(method, "rtn") && strcmp(method, "dlqat") && strcmp(method, "gptq") && strcmp(method, "qalora") &&
                strcmp(method, "qat") && strcmp(method, "nf4-lora")) {
                fprintf(stderr, "dlqat quantize: --method must be rtn, dlqat, gptq, qalora, qat or nf4-lora, got '%s'\n", method);
                return 2;
            }
        } else if (cli_is(&a, "--base", NULL)) {
            const char *s = cli_str(&a);
            if (!strcmp(s, "gptq")) base_gptq = 1;
            else if (!strcmp(s, "rtn")) base_gptq = 0;
            else { fprintf(stderr, "dlqat quantize: --base must be rtn or gptq\n"); return 2; }
        } else if (cli_is(&a, "--calib", NULL)) calib = cli_int(&a, 1, 1 << 24);
        else if (cli_is(&a, "--act-order", NULL)) gopt.act_order = 1;
        else if (cli_is(&a, "--nf4-block", NULL)) nf4_block = (int)cli_int(&a, 2, 1 << 20);
        else if (cli_is(&a, "--double-quant", NULL)) nf4_dq = 1;
        else if (cli_is(&a, "--damp", NULL)) gopt.percdamp = cli_num(&a, 1e-9, 10);
        else if (cli_is(&a, "--gptq-block", NULL)) gopt.blocksize = (int)cli_int(&a, 1, 1 << 20);
        else if (cli_is(&a, "--recompute", NULL)) { o.recompute = 1;
        } else if (cli_is(&a, "--bits", NULL)) { o.qspec.bits = (int)cli_int(&a, 2, 8); bits_set = 1; }
        else if (cli_is(&a, "--group", NULL)) {
            const char *s = cli_str(&a);
            if (!strcmp(s, "channel")) o.qspec.group = 0;
            else {
                char *end;
                long g = strtol(s, &end, 10);
                if (*end || g < 1 || g > (1 << 24)) { fprintf(stderr, "dlqat quantize: --group expects a positive size or 'channel', got '%s'\n", s); return 2; }
                o.qspec.group = (int)g;
            }
        } else if (cli_is(&a, "--data", NULL)) data = cli_str(&a);
        else if (cli_is(&a, "--data-format", NULL)) fmt = cli_str(&a);
        else if (cli_is(&a, "--out", "-o")) out = cli_str(&a);
        else if (cli_is(&a, "--json", NULL)) json = cli_str(&a);
        else if (cli_is(&a, "--tokenizer", NULL)) tok = cli_str(&a);
        else if (cli_is(&a, "--eval-text", NULL)) eval_text = cli_str(&a);
        else if (cli_is(&a, "--eval-tokens", NULL)) eval_tokens = cli_str(&a);
        else if (cli_is(&a, "--loss", NULL)) {
            const char *s = cli_str(&a);
            if (dlq_loss_parse(s, &o.loss)) { fprintf(stderr, "dlqat quantize: --loss must be ce, kl or ce+kl, got '%s'\n", s); return 2; }
        }
        else if (cli_is(&a, "--ctx", NULL)) ctx = (int)cli_int(&a, 2, 1 << 20);
        else if (cli_is(&a, "--eval-windows", NULL)) eval_windows = cli_int(&a, 1, 1LL << 40);
        else if (cli_is(&a, "--phase1-steps", NULL)) p1 = cli_int(&a, 0, 1LL << 40);
        else if (cli_is(&a, "--steps", NULL)) p2 = cli_int(&a, 0, 1LL << 40);
        else if (cli_is(&a, "--m-steps", NULL)) msteps = cli_int(&a, 0, 1LL << 40);
        else if (cli_is(&a, "--stages", NULL)) stages = (int)cli_int(&a, 2, 3);
        else if (cli_is(&a, "--phase2-sb", NULL)) phase2_sb = 1;
        else if (cli_is(&a, "--rank", "-r")) o.lora_r = (int)cli_int(&a, 0, 4096);
        else if (cli_is(&a, "--alpha", NULL)) o.lora_alpha = (float)cli_num(&a, 1e-6, 1e6);
        else if (cli_is(&a, "--targets", NULL)) {
            if (dlq_parse_targets(cli_str(&a), &o.targets, &err)) { fprintf(stderr, "dlqat quantize: %s\n", err.msg); return 2; }
        } else if (cli_is(&a, "--lora-init", NULL)) {
            const char *s = cli_str(&a);
            if (!strcmp(s, "kaiming")) o.lora_init = DLQ_LORA_KAIMING;
            else if (!strcmp(s, "gaussian")) o.lora_init = DLQ_LORA_GAUSSIAN;
            else { fprintf(stderr, "dlqat quantize: --lora-init must be kaiming or gaussian\n"); return 2; }
        } else if (cli_is(&a, "--lr", NULL)) lr = cli_num(&a, 0, 10);
        else if (cli_is(&a, "--lr-sb", NULL)) lr_sb = cli_num(&a, 0, 10);
        else if (cli_is(&a, "--lr-m", NULL)) lr_m = cli_num(&a, 0, 10);
        else if (cli_is(&a, "--lr-ab", NULL)) lr_ab = cli_num(&a, 0, 10);
        else if (cli_is(&a, "--batch", NULL)) o.B = (int)cli_int(&a, 1, 1 << 16);
        else if (cli_is(&a, "--seq", NULL)) { o.T = (int)cli_int(&a, 2, 1 << 20); seq_set = 1; }
        else if (cli_is(&a, "--accum", NULL)) tc.accum = (int)cli_int(&a, 1, 1 << 16);
        else if (cli_is(&a, "--schedule", NULL)) {
            if (dlq_schedule_parse(&tc.sched, cli_str(&a))) { fprintf(stderr, "dlqat quantize: bad --schedule\n"); return 2; }
        } else if (cli_is(&a, "--warmup", NULL)) tc.sched.warmup = cli_int(&a, 0, 1LL << 40);
        else if (cli_is(&a, "--clip", NULL)) tc.clip = (float)cli_num(&a, 0, 1e9);
        else if (cli_is(&a, "--seed", NULL)) o.seed = (uint64_t)cli_int(&a, 0, 1LL << 62);
        else if (cli_is(&a, "--clip-search", NULL)) o.clip_search = 1;
        else if (cli_is(&a, "--sym", NULL)) o.qspec.sym = 1;
        else if (cli_is(&a, "--int-zero", NULL)) o.qspec.int_zero = 1;
        else if (cli_is(&a, "--lsq", NULL)) o.lsq = 1;
        else if (cli_is(&a, "--train-norms", NULL)) o.train_norms = 1;
        else if (cli_is(&a, "--train-embeddings", NULL)) o.train_emb = 1;
        else if (cli_is(&a, "--rotate", NULL)) rotate = 1;
        else if (cli_is(&a, "--rotate-steps", NULL)) { rot_steps = cli_int(&a, 0, 1LL << 40); rotate = 1; }
        else if (cli_is(&a, "--rotate-lr", NULL)) rot_lr = cli_num(&a, 1e-9, 10);
        else if (cli_is(&a, "--rotate-heads", NULL)) rot_heads = 1;
        else if (cli_is(&a, "--dampen", NULL)) o.dampen = (float)cli_num(&a, 0, 1e6);
        else if (cli_is(&a, "--val-fraction", NULL)) val_fraction = cli_num(&a, 0, 0.9);
        else if (cli_is(&a, "--eval-every", NULL)) tc.eval_every = cli_int(&a, 0, 1LL << 40);
        else if (cli_is(&a, "--ckpt-every", NULL)) tc.ckpt_every = cli_int(&a, 0, 1LL << 40);
        else if (cli_is(&a, "--resume", NULL)) resume = 1;
        else if (cli_is(&a, "--workdir", NULL)) workdir = cli_str(&a);
        else if (cli_is(&a, "--keep-work", NULL)) keep_work = 1;
        else cli_unknown(&a);
    }
    if (!model || !out) { fprintf(stderr, "dlqat quantize: --model and --out are required\n"); return 2; }
    if (!bits_set) fprintf(stderr, "[quantize] --bits not given: using %d\n", o.qspec.bits);
    int is_gptq = !strcmp(method, "gptq"), is_qat = !strcmp(method, "qat"), is_qalora = !strcmp(method, "qalora");
    int is_nf4 = !strcmp(method, "nf4-lora");
    if (is_nf4 && (base_gptq || stages == 3)) { fprintf(stderr, "dlqat quantize: nf4-lora has its own base and one stage (LoRA)\n"); return 2; }
    if (is_nf4) { o.mode = DLQ_MODE_LORA; o.qspec.bits = 4; o.qspec.group = nf4_block; bits_set = 1; }
    if (is_gptq) base_gptq = 1;
    int trained_method = !strcmp(method, "dlqat") || is_qat || is_qalora || is_nf4;
    int train = trained_method && (p1 + p2 + msteps) > 0;
    if (rot_heads && rot_steps == 0) {
        fprintf(stderr, "dlqat quantize: --rotate-heads is learned with the residual rotation: give --rotate-steps N\n");
        return 2;
    }
    if (rot_steps > 0 && !data) {
        fprintf(stderr, "dlqat quantize: --rotate-steps learns on --data: give a training file\n");
        return 2;
    }
    if ((train || base_gptq) && !data) {
        fprintf(stderr, "dlqat quantize: --method %s needs --data (or use --method rtn)\n", method);
        return 2;
    }
    if ((o.train_norms || o.train_emb) && (!train || is_nf4)) {
        fprintf(stderr, "dlqat quantize: %s needs a trained method with steps (dlqat, qat or qalora)\n",
                o.train_norms ? "--train-norms" : "--train-embeddings");
        return 2;
    }
    if (is_qat) { o.full_qat = 1; o.lora_r = 0; }
    if (is_qalora) o.qalora = 1;
    if (o.dampen > 0 && (is_qalora || is_nf4)) {
        fprintf(stderr, "dlqat quantize: --dampen is for dlqat and qat (%s has no trained W')\n", method);
        return 2;
    }
    if (phase2_sb && (is_qalora || is_nf4)) {
        fprintf(stderr, "dlqat quantize: --phase2-sb is for dlqat and qat (%s has no trained s, b)\n", method);
        return 2;
    }
    if (is_qalora && stages == 3) { fprintf(stderr, "dlqat quantize: --stages 3 is a DL-QAT schedule (QA-LoRA trains A, B only)\n"); return 2; }
    if (eval_text && eval_tokens) { fprintf(stderr, "dlqat quantize: give --eval-text or --eval-tokens, not both\n"); return 2; }
    if (!data && !eval_text && !eval_tokens) fprintf(stderr, "[quantize] no --data or --eval-text: perplexity is not measured\n");
    if (!train) { p1 = p2 = msteps = 0; }
    if (stages == 2) msteps = 0;

    double t0 = cli_now();
    dlq_model *m;
    if (cli_load_model(&m, model, tok, NULL)) return 1;
    int rc = 1;
    if (rotate) {
        if (dlq_model_rotate(m, o.seed, &err)) {
            fprintf(stderr, "dlqat quantize: --rotate: %s\n", err.msg);
            dlq_model_destroy(m);
            return 1;
        }
        fprintf(stderr, "[quantize] rotated: norms folded, residual stream (%d) and v/o heads (%d), seed %llu\n", m->cfg.dim,
                m->cfg.head_dim, (unsigned long long)o.seed);
    }
    dlq_dataset *ds = NULL;
    dlq_tmodel *tm = NULL;
    dlq_model *fq = NULL, *qm = NULL;
    float *gptq_w = NULL;
    double t_gptq = 0;
    cli_trainlog lg = {NULL, "quantize", 0};
    evalset ev = {.text = eval_text, .tokens = eval_tokens, .ctx = ctx ? ctx : m->cfg.max_seq, .max_windows = eval_windows, .B = 1};
    if (!m->tok && eval_text) { fprintf(stderr, "dlqat quantize: %s has no tokenizer; pass --tokenizer (or use --eval-tokens)\n", model); goto done; }
    if (data) {
        dlq_data_opts dopt;
        dlq_data_opts_default(&dopt);
        dopt.T = o.T;
        /* token files carry their row length: take it unless --seq was given */
        const char *det = strcmp(fmt, "auto") ? fmt : dlq_data_detect(data, &err);
        if (!det) { fprintf(stderr, "dlqat quantize: %s\n", err.msg); goto done; }
        if (!strcmp(det, "tokens") && !seq_set) dopt.T = 0;
        if (!m->tok && strcmp(det, "tokens")) {
            fprintf(stderr, "dlqat quantize: %s has no tokenizer: pass --tokenizer, or token-file --data (dlqat sample)\n", model);
            goto done;
        }
        dopt.val_fraction = val_fraction;
        dopt.seed = o.seed;
        if (dlq_data_open(&ds, data, fmt, m->tok, &dopt, &err)) { fprintf(stderr, "dlqat quantize: %s\n", err.msg); goto done; }
        if (dlq_data_n_skipped(ds)) fprintf(stderr, "[quantize] %lld malformed records skipped\n", (long long)dlq_data_n_skipped(ds));
        ev.ds = ds;
        o.T = dlq_data_T(ds);
    }
    if (eval_text) {
        size_t len;
        char *buf = cli_read_text(eval_text, &len);
        int erc = dlq_tok_encode(m->tok, buf, len, 1, &ev.ids, &ev.n, &err);
        free(buf);
        if (erc) { fprintf(stderr, "dlqat quantize: %s: %s\n", eval_text, err.msg); goto done; }
    }
    if (rot_steps > 0) {
        dlq_rotlearn_opts ro = {.steps = rot_steps, .lr = (float)rot_lr, .B = o.B, .T = o.T, .qspec = o.qspec,
                                .targets = o.targets, .loss = o.loss, .seed = o.seed, .recompute = o.recompute,
                                .heads = rot_heads};
        rot_prog rp = {cli_now()};
        if (dlq_rotate_learn(m, ds, &ro, rot_progress, &rp, &rot_first, &rot_last, &err)) {
            fprintf(stderr, "\ndlqat quantize: --rotate-steps: %s\n", err.msg);
            goto done;
        }
        t_rot = cli_now() - rp.t0;
        fprintf(stderr, "\n[quantize] learned rotation: %lld steps, %s loss of the RTN model %.4f -> %.4f (%.0f s)\n", rot_steps,
                dlq_loss_name(o.loss), rot_first, rot_last, t_rot);
    }
    if (dlq_tmodel_create(&tm, m, &o, &err)) { fprintf(stderr, "dlqat quantize: %s\n", err.msg); goto done; }
    if (is_nf4 && dlq_nf4_tmodel_init(tm, &nf4, nf4_block, nf4_dq, &err)) { fprintf(stderr, "dlqat quantize: NF4: %s\n", err.msg); goto done; }
    int64_t nparams = dlq_model_n_params(m);
    size_t n_sb = dlq_tmodel_count(tm, DLQ_TRAIN_SB), n_m = dlq_tmodel_count(tm, DLQ_TRAIN_M), n_ab = dlq_tmodel_count(tm, DLQ_TRAIN_AB);
    size_t n_sb2 = phase2_sb ? n_sb : 0; /* s, b still trained after phase 1 */
    const char *sb2 = phase2_sb ? " + s, b" : "";
    fprintf(stderr, "[quantize] %s W%d %s on %s (%lld parameters); targets:", method, o.qspec.bits,
            o.qspec.group ? "" : "per-channel", model, (long long)nparams);
    for (int p = 0; p < DLQ_N_PROJ; p++) if (o.targets >> p & 1u) fprintf(stderr, " %s", dlq_proj_names[p]);
    if (o.qspec.group) fprintf(stderr, "; group %d", o.qspec.group);
    fprintf(stderr, "\n");
    if (train && is_nf4) {
        fprintf(stderr, "[quantize] NF4 (block %d%s) + LoRA: %lld steps, %zu trainable parameters (%.3f%%)\n", nf4_block,
                nf4_dq ? ", double quantization" : "", p1 + p2, dlq_params_trainable(&tm->params),
                100.0 * dlq_params_trainable(&tm->params) / nparams);
    } else if (train && is_qalora) {
        fprintf(stderr, "[quantize] QA-LoRA (A, B over the frozen %s base): %lld steps, %zu trainable parameters (%.3f%%)\n",
                base_gptq ? "GPTQ" : "RTN", p1 + p2, n_ab, 100.0 * n_ab / nparams);
    } else if (train && is_qat) {
        size_t n_w = dlq_tmodel_count(tm, DLQ_TRAIN_W) + n_sb2;
        fprintf(stderr, "[quantize] phase 1 (s, b): %lld steps, %zu trainable parameters (%.3f%%)\n", p1, n_sb, 100.0 * n_sb / nparams);
        fprintf(stderr, "[quantize] phase 2 (all weights W%s, full QAT): %lld steps, %zu trainable parameters (%.3f%%)\n", sb2, p2, n_w,
                100.0 * n_w / nparams);
    } else if (train) {
        fprintf(stderr, "[quantize] phase 1 (s, b): %lld steps, %zu trainable parameters (%.3f%%)\n", p1, n_sb, 100.0 * n_sb / nparams);
        if (stages == 3) {
            fprintf(stderr, "[quantize] phase 2 (m%s): %lld steps, %zu trainable parameters (%.3f%%)\n", sb2, msteps, n_m + n_sb2,
                    100.0 * (n_m + n_sb2) / nparams);
            fprintf(stderr, "[quantize] phase 3 (A, B%s): %lld steps, %zu trainable parameters (%.3f%%)\n", sb2, p2, n_ab + n_sb2,
                    100.0 * (n_ab + n_sb2) / nparams);
        } else
            fprintf(stderr, "[quantize] phase 2 (m, A, B%s): %lld steps, %zu trainable parameters (%.3f%%)\n", sb2, p2,
                    n_m + n_ab + n_sb2, 100.0 * (n_m + n_ab + n_sb2) / nparams);
    }
    /* baselines: FP and the RTN initialisation */
    double nll_fp = NAN, nll_rtn = NAN, nll_q = NAN;
    int64_t ntok = 0;
    int have_eval = eval_text || eval_tokens || (ds && dlq_data_n_val(ds) > 0);
    if (have_eval) {
        if (evaluate(m, &ev, &nll_fp, &ntok, &err)) { fprintf(stderr, "dlqat quantize: %s\n", err.msg); goto done; }
        if (dlq_tmodel_to_model(tm, &fq, &err) || evaluate(fq, &ev, &nll_rtn, &ntok, &err)) {
            fprintf(stderr, "dlqat quantize: %s\n", err.msg);
            goto done;
        }
        dlq_model_destroy(fq);
        fq = NULL;
        fprintf(stderr, "[quantize] eval on %s (%lld tokens): FP ppl %.4f, %s ppl %.4f\n",
                eval_tokens ? eval_tokens : eval_text ? eval_text : "held-out rows of --data", (long long)ntok, exp(nll_fp),
                is_nf4 ? "NF4" : "RTN", exp(nll_rtn));
    }
    if (base_gptq) {
        double tg = cli_now();
        if (run_gptq(tm, ds, calib, &gopt, &gptq_w, &err)) { fprintf(stderr, "dlqat quantize: %s\n", err.msg); goto done; }
        t_gptq = cli_now() - tg;
    }
    dlq_train_state st;
    memset(&st, 0, sizeof st);
    char wd[1200], ckdir[1300], mpath[1300];
    snprintf(wd, sizeof wd, "%s", workdir ? workdir : out);
    if (!workdir) strncat(wd, ".work", sizeof wd - strlen(wd) - 1);
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", wd);
    snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", wd);
    double t_train = 0;
    if (train) {
        if (mkdir(wd, 0755) && !dlq_path_is_dir(wd)) { fprintf(stderr, "dlqat quantize: cannot create %s\n", wd); goto done; }
        char meta[512];
        snprintf(meta, sizeof meta, "{\"method\": \"%s\", \"bits\": %d, \"group\": %d, \"rank\": %d, \"stages\": %d, \"loss\": \"%s\", \"rotate\": %s, \"rotate_steps\": %lld, \"rotate_heads\": %s}",
                 method, o.qspec.bits, o.qspec.group, o.lora_r, stages, dlq_loss_name(o.loss), rotate ? "true" : "false", rot_steps,
                 rot_heads ? "true" : "false");
        if (resume) {
            char phase[64];
            if (dlq_train_resume(tm, ds, ckdir, meta, &st, phase, sizeof phase, &err)) { fprintf(stderr, "dlqat quantize: --resume: %s\n", err.msg); goto done; }
            fprintf(stderr, "[quantize] resumed at step %lld (%s) from %s\n", (long long)st.step, phase, ckdir);
        }
        if (dlq_metrics_open(&lg.metrics, mpath, resume ? st.step : -1, NULL, &err)) { fprintf(stderr, "dlqat quantize: %s\n", err.msg); goto done; }
        volatile sig_atomic_t stop = 0;
        dlq_install_stop_signals(&stop, &err);
        typedef struct { const char *name; unsigned mask; long long steps; double lr_main, lr_m_mult; } phase_t;
        phase_t ph[3];
        int nph = 0;
        if (is_nf4) ph[nph++] = (phase_t){"nf4-lora", DLQ_TRAIN_AB, p1 + p2, lr_or(lr_ab, lr), 1};
        else if (is_qalora) ph[nph++] = (phase_t){"qalora-ab", DLQ_TRAIN_AB, p1 + p2, lr_or(lr_ab, lr), 1};
        else ph[nph++] = (phase_t){"phase1-sb", DLQ_TRAIN_SB, p1, lr_or(lr_sb, lr), 1};
        if (is_qalora || is_nf4) {
        } else if (is_qat) {
            ph[nph++] = (phase_t){"phase2-w", DLQ_TRAIN_W, p2, lr, 1};
        } else if (stages == 3) {
            ph[nph++] = (phase_t){"phase2-m", DLQ_TRAIN_M, msteps, lr_or(lr_m, lr), 1};
            ph[nph++] = (phase_t){"phase3-ab", DLQ_TRAIN_AB, p2, lr_or(lr_ab, lr), 1};
        } else {
            ph[nph++] = (phase_t){"phase2-m-ab", DLQ_TRAIN_M | DLQ_TRAIN_AB, p2, lr_or(lr_ab, lr),
                                        lr_or(lr_m, lr) / lr_or(lr_ab, lr)};
        }
        if (o.train_norms) ph[nph - 1].mask |= DLQ_TRAIN_NORM; /* the norms join the last phase */
        if (o.train_emb) ph[nph - 1].mask |= DLQ_TRAIN_EMB;
        /* --phase2-sb: the quantization grid keeps adapting while the weights move (s, b at --lr-sb,
           through their group's lr multiplier relative to the phase's main lr) */
        if (phase2_sb)
            for (int i = 1; i < nph; i++) ph[i].mask |= DLQ_TRAIN_SB;
        lg.run_total = 0;
        for (int i = 0; i < nph; i++) lg.run_total += ph[i].steps; /* the whole-run ETA */
        double ts = cli_now();
        int64_t begin = 0;
        for (int i = 0; i < nph; i++) {
            int64_t end = begin + ph[i].steps;
            if (ph[i].steps > 0 && st.step < end) {
                dlq_tmodel_set_trainable(tm, ph[i].mask);
                tm->params.groups[tm->group_m].lr_mult = (float)ph[i].lr_m_mult;
                tm->params.groups[tm->group_sb].lr_mult = i == 0 ? 1.0f : (float)(lr_or(lr_sb, lr) / ph[i].lr_main);
                if (st.step <= begin) { /* a fresh optimizer per phase */
                    dlq_params_alloc_optim(&tm->params, &err);
                    memset(tm->params.m, 0, tm->params.total * sizeof(float));
                    memset(tm->params.v, 0, tm->params.total * sizeof(float));
                    st.opt.step = 0;
                }
                dlq_train_cfg c = tc;
                c.phase = ph[i].name;
                c.step_begin = begin;
                c.step_end = end;
                c.sched.lr = (float)ph[i].lr_main;
                c.sched.total = ph[i].steps;
                c.ckpt_dir = ckdir;
                c.run_meta = meta;
                c.stop = &stop;
                c.on_step = cli_log_step;
                c.user = &lg;
                if (dlq_train_run(tm, ds, &c, &st, &err)) { fprintf(stderr, "\ndlqat quantize: %s\n", err.msg); goto done; }
                if (st.interrupted) {
                    fprintf(stderr, "\n[quantize] interrupted at step %lld: checkpoint in %s; continue with --resume\n",
                            (long long)st.step, ckdir);
                    rc = 130;
                    goto done;
                }
            }
            begin = end;
        }
        t_train = cli_now() - ts;
    }
    /* merge and write */
    char meta[512];
    snprintf(meta, sizeof meta, "{\"source\": \"%s\", \"phase1_steps\": %lld, \"steps\": %lld, \"m_steps\": %lld, \"rank\": %d, "
             "\"alpha\": %g, \"batch\": %d, \"seq\": %d, \"lr\": %g, \"loss\": \"%s\", \"rotate\": %s}", model, p1, p2, msteps, o.lora_r,
             o.lora_alpha, o.B, o.T, lr, dlq_loss_name(o.loss), rotate ? "true" : "false");
    if (is_nf4) {
        if (dlq_nf4_export_dlq(tm, &nf4, out, meta, &err)) { fprintf(stderr, "dlqat quantize: %s\n", err.msg); goto done; }
    } else if (dlq_quant_export_dlq(tm, out, method, meta, &err)) { fprintf(stderr, "dlqat quantize: %s\n", err.msg); goto done; }
    fprintf(stderr, "[quantize] wrote %s\n", out);
    if (have_eval) {
        if (dlq_model_load(&qm, out, NULL, &err) || evaluate(qm, &ev, &nll_q, &ntok, &err)) {
            fprintf(stderr, "dlqat quantize: evaluating %s: %s\n", out, err.msg);
            goto done;
        }
    }
    char gname[32];
    if (o.qspec.group) snprintf(gname, sizeof gname, "g%d", o.qspec.group);
    else snprintf(gname, sizeof gname, "per-channel");
    size_t tp1 = !train ? 0 : is_nf4 ? dlq_params_trainable(&tm->params) : is_qalora ? n_ab : n_sb;
    size_t tp2 = !train || is_qalora || is_nf4 ? 0 : is_qat ? dlq_tmodel_count(tm, DLQ_TRAIN_W) + n_sb2 : n_m + n_ab + n_sb2;
    const char *label = !strcmp(method, "dlqat") ? "DL-QAT" : is_qat ? "full QAT" : is_qalora ? "QA-LoRA" : is_gptq ? "GPTQ" : is_nf4 ? "NF4 + LoRA" : NULL;
    printf("| model | bits | group | ppl |\n|---|---|---|---|\n");
    if (have_eval) {
        printf("| FP | 16 | - | %.4f |\n", exp(nll_fp));
        printf("| %s | %d | %s | %.4f |\n", is_nf4 ? "NF4 (no LoRA)" : "RTN", o.qspec.bits, gname, exp(nll_rtn));
        if (label) printf("| %s | %d | %s | %.4f |\n", label, o.qspec.bits, gname, exp(nll_q));
    }
    if (json) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:s, s:i, s:I, s:I, s:I, s:i, s:f, s:I, s:I, s:I, s:f, s:f, s:I}", "method", method,
                              "model", model, "out", out, "bits", o.qspec.bits, "group", gname, "stages", stages,
                              "phase1_steps", (json_int_t)p1, "steps", (json_int_t)p2, "m_steps", (json_int_t)msteps, "rank", o.lora_r,
                              "lr", lr, "trainable_params_phase1", (json_int_t)tp1,
                              "trainable_params_phase2", (json_int_t)tp2, "total_params", (json_int_t)nparams,
                              "wall_s", cli_now() - t0, "train_s", t_train, "peak_rss_kb", (json_int_t)cli_peak_rss_kb());
        json_object_set_new(j, "trainable_params", json_integer((json_int_t)(tp1 > tp2 ? tp1 : tp2)));
        json_object_set_new(j, "base", json_string(base_gptq ? "gptq" : "rtn"));
        json_object_set_new(j, "train_norms", json_boolean(o.train_norms));
        json_object_set_new(j, "train_embeddings", json_boolean(o.train_emb));
        json_object_set_new(j, "rotate", json_boolean(rotate));
        if (rot_steps > 0) {
            json_object_set_new(j, "rotate_steps", json_integer(rot_steps));
            json_object_set_new(j, "rotate_lr", json_real(rot_lr));
            json_object_set_new(j, "rotate_heads", json_boolean(rot_heads));
            json_object_set_new(j, "rotate_loss_first", json_real(rot_first));
            json_object_set_new(j, "rotate_loss_last", json_real(rot_last));
            json_object_set_new(j, "rotate_s", json_real(t_rot));
        }
        if (!is_qalora && !is_nf4) json_object_set_new(j, "phase2_sb", json_boolean(phase2_sb));
        if (o.dampen > 0) json_object_set_new(j, "dampen", json_real(o.dampen));
        if (base_gptq) {
            json_object_set_new(j, "gptq_s", json_real(t_gptq));
            json_object_set_new(j, "calib_sequences", json_integer(calib));
            json_object_set_new(j, "act_order", json_boolean(gopt.act_order));
        }
        if (have_eval) {
            json_object_set_new(j, "eval", json_pack("{s:s, s:I, s:i}", "on",
                                                     eval_tokens ? eval_tokens : eval_text ? eval_text : "held-out rows of data",
                                                     "tokens", (json_int_t)ntok, "ctx", eval_text ? ev.ctx : o.T));
            json_object_set_new(j, "ppl_fp", json_real(exp(nll_fp)));
            json_object_set_new(j, "ppl_rtn", json_real(exp(nll_rtn)));
            json_object_set_new(j, "ppl_before", json_real(exp(nll_rtn)));
            json_object_set_new(j, "ppl_after", json_real(exp(nll_q)));
        }
        if (train) json_object_set_new(j, "final_loss", json_real(st.last_loss));
        json_object_set_new(j, "loss", json_string(dlq_loss_name(o.loss)));
        json_object_set_new(j, "seq", json_integer(o.T));
        json_object_set_new(j, "batch", json_integer(o.B));
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
        if (cli_write_json(json, s)) { free(s); json_decref(j); goto done; }
        free(s);
        json_decref(j);
    }
    rc = 0;
done:
    if (lg.metrics) dlq_metrics_close(lg.metrics, &err);
    lg.metrics = NULL;
    /* a finished run's work folder (checkpoints, metrics) is not a result: removed unless asked for */
    if (rc == 0 && train && !keep_work && !workdir && dlq_path_is_dir(wd) && cli_remove_tree(wd) != 0)
        fprintf(stderr, "dlqat quantize: warning: could not remove the work folder %s\n", wd);
    free(ev.ids);
    dlq_model_destroy(qm);
    dlq_model_destroy(fq);
    dlq_nf4_model_free(&nf4);
    dlq_tmodel_destroy(tm);
    free(gptq_w);
    if (ds) dlq_data_close(ds);
    dlq_model_destroy(m);
    return rc;
}
