/* End-to-end data-free path through the CLI on the shipped stories260K (token
 * files only): sample -> info -> ppl --tokens -> quantize --loss kl on the
 * token file -> ppl of the .dlq; and clear errors for bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "kernels/linear.h"
#include "model/model.h"
#include "t.h"

#define M "models/stories260K/stories260K.bin"
#define DIR "build/tests/cli_datafree"

/* a number from a run JSON (NAN when absent) */
int main(void) {
    static char o[1 << 16];
    if (system("mkdir -p " DIR) != 0) { CHECK(0, "mkdir"); return T_DONE(); }
    int rc = t_run("build/dlqat sample --model " M " --n 24 --len 64 --seed 1 --batch 8 --out " DIR "/train.tok", o, sizeof o);
    CHECK(rc == 0 && strstr(o, "wrote"), "sample train (rc %d): %s", rc, o);
    rc = t_run("build/dlqat sample --model " M " --n 8 --len 64 --seed 2 --out " DIR "/eval.tok", o, sizeof o);
    CHECK(rc == 0, "sample eval (rc %d): %s", rc, o);
    rc = t_run("build/dlqat info " DIR "/train.tok", o, sizeof o);
    CHECK(rc == 0 && strstr(o, "rows        24") && strstr(o, "64 ids"), "info on a token file (rc %d): %s", rc, o);
    rc = t_run("build/dlqat ppl --model " M " --tokens " DIR "/eval.tok --json " DIR "/fp.json", o, sizeof o);
    CHECK(rc == 0 && strstr(o, "| 64 | 8 | 512 |"), "ppl --tokens (rc %d): %s", rc, o);
    rc = t_run("build/dlqat quantize --model " M " --bits 3 --group 32 --data " DIR "/train.tok --eval-tokens " DIR
             "/eval.tok --loss kl --phase1-steps 3 --steps 3 --batch 4 --lr 1e-3 --out " DIR "/w3.dlq --json " DIR "/w3.json",
             o, sizeof o);
    CHECK(rc == 0 && strstr(o, "| DL-QAT | 3 | g32 |"), "quantize --loss kl on tokens (rc %d): %s", rc, o);
    /* a finished run leaves no work folder unless --keep-work */
    CHECK(access(DIR "/w3.dlq.work", F_OK) != 0, "the work folder of a finished run was removed");
    /* a LoRA fine-tune of the llama2.c checkpoint writes its tokenizer (tok512.model) into the merged HF folder */
    rc = t_run("build/dlqat finetune --model " M " --data " DIR "/train.tok --mode lora --steps 2 --batch 2 --merge --out " DIR "/ft",
               o, sizeof o);
    CHECK(rc == 0 && access(DIR "/ft/merged/tokenizer.model", F_OK) == 0 && access(DIR "/ft/merged/tokenizer_config.json", F_OK) == 0,
          "finetune --merge of a llama2.c model carries its tokenizer (rc %d): %s", rc, o);
    FILE *f = fopen(DIR "/w3.json", "r");
    if (f) {
        size_t n = fread(o, 1, sizeof o - 1, f);
        o[n] = 0;
        fclose(f);
        CHECK(strstr(o, "\"loss\": \"kl\"") && strstr(o, "\"seq\": 64"), "run JSON records the loss and the file's row length: %s", o);
    } else CHECK(0, "no run JSON");
    rc = t_run("build/dlqat ppl --model " DIR "/w3.dlq --tokens " DIR "/eval.tok", o, sizeof o);
    CHECK(rc == 0 && strstr(o, "| 64 | 8 | 512 |"), "ppl of the .dlq on tokens (rc %d): %s", rc, o);

    /* --train-norms --train-embeddings: the .dlq carries the trained norms and
     * the trained (tied) embedding, not the base's, and its perplexity is the
     * one the run reported for the merged model */
    rc = t_run("build/dlqat quantize --model " M " --bits 4 --group 32 --data " DIR "/train.tok --eval-tokens " DIR
             "/eval.tok --loss kl --phase1-steps 2 --steps 6 --batch 4 --lr 1e-2 --train-norms --train-embeddings --out " DIR
             "/tn.dlq --json " DIR
             "/tn.json", o, sizeof o);
    CHECK(rc == 0 && strstr(o, "| DL-QAT | 4 | g32 |"), "quantize --train-norms (rc %d): %s", rc, o);
    dlq_model *base = NULL, *tn = NULL;
    dlq_err err = {0};
    if (rc == 0 && !dlq_model_load(&base, M, NULL, &err) && !dlq_model_load(&tn, DIR "/tn.dlq", NULL, &err)) {
        int D = base->cfg.dim;
        float a[1024], b[1024];
        double moved = 0;
        const dlq_weight *pairs[][2] = {{&base->layers[0].attn_norm, &tn->layers[0].attn_norm},
                                        {&base->layers[0].ffn_norm, &tn->layers[0].ffn_norm},
                                        {&base->out_norm, &tn->out_norm},
                                        {&base->tok_emb, &tn->tok_emb}};
        for (int k = 0; k < 4; k++) {
            dlq_weight_row(pairs[k][0], k == 3 ? 1 : 0, a); /* row 1 of the embedding: BOS, in every sampled row */
            dlq_weight_row(pairs[k][1], k == 3 ? 1 : 0, b);
            double d = 0;
            for (int j = 0; j < D; j++) d = fmax(d, fabs(a[j] - b[j]));
            CHECK(d > 1e-4, "--train-norms/--train-embeddings: tensor %d unchanged in the .dlq (max change %g)", k, d);
            moved += d;
        }
        json_t *j = json_load_file(DIR "/tn.json", 0, NULL);
        double after = json_real_value(json_object_get(j, "ppl_after"));
        CHECK(json_is_true(json_object_get(j, "train_norms")) && json_is_true(json_object_get(j, "train_embeddings")),
              "the run JSON records --train-norms and --train-embeddings");
        json_decref(j);
        rc = t_run("DLQ_QACT=f32 build/dlqat ppl --model " DIR "/tn.dlq --tokens " DIR "/eval.tok --json " DIR "/tn-ppl.json", o,
                   sizeof o);
        j = json_load_file(DIR "/tn-ppl.json", 0, NULL);
        double got = json_real_value(json_object_get(j, "ppl"));
        json_decref(j);
        CHECK(rc == 0 && after > 0 && fabs(got - after) <= 1e-4 * after, "--train-norms: .dlq ppl %.6f vs the run's %.6f", got,
              after);
    } else {
        CHECK(0, "load: %s", err.msg);
    }
    dlq_model_destroy(base);
    dlq_model_destroy(tn);
    /* --phase2-sb: s, b keep training after phase 1. With no phase 1, no LoRA (rank 0) and a
       vanishing lr for m, a run without the flag leaves the RTN model exactly as it was (same
       perplexity as --method rtn, to the bit); with it, s and b move and the model changes. */
#define P2SB "build/dlqat quantize --model " M " --bits 3 --group 32 --data " DIR "/train.tok --eval-tokens " DIR \
             "/eval.tok --loss kl --phase1-steps 0 --steps 4 --batch 4 --rank 0 --lr 1e-30 --lr-sb 1e-2"
    rc = t_run("build/dlqat quantize --model " M " --method rtn --bits 3 --group 32 --eval-tokens " DIR "/eval.tok --out " DIR
               "/rtn.dlq --json " DIR "/rtn.json", o, sizeof o);
    CHECK(rc == 0, "rtn (rc %d): %s", rc, o);
    rc = t_run(P2SB " --out " DIR "/nosb.dlq --json " DIR "/nosb.json", o, sizeof o);
    CHECK(rc == 0 && strstr(o, "phase 2 (m, A, B):"), "phase 2 without s, b (rc %d): %s", rc, o);
    rc = t_run(P2SB " --phase2-sb --out " DIR "/sb.dlq --json " DIR "/sb.json", o, sizeof o);
    CHECK(rc == 0 && strstr(o, "phase 2 (m, A, B + s, b):"), "--phase2-sb (rc %d): %s", rc, o);
    double p_rtn = t_json_num(DIR "/rtn.json", "ppl_after"), p_nosb = t_json_num(DIR "/nosb.json", "ppl_after");
    double p_sb = t_json_num(DIR "/sb.json", "ppl_after");
    CHECK(p_rtn > 1 && p_nosb == p_rtn, "frozen s, b: the RTN model unchanged (ppl %.6f vs RTN %.6f)", p_nosb, p_rtn);
    CHECK(p_sb > 1 && fabs(p_sb - p_rtn) > 1e-6 * p_rtn, "--phase2-sb trains s, b (ppl %.6f vs RTN %.6f)", p_sb, p_rtn);
    double n2 = t_json_num(DIR "/sb.json", "trainable_params_phase2"), n2f = t_json_num(DIR "/nosb.json", "trainable_params_phase2");
    CHECK(n2 == 3 * n2f, "phase 2 counts m, s and b with the flag (%.0f), m alone without (%.0f)", n2, n2f);
    rc = t_run("build/dlqat quantize --model " M " --method qalora --bits 3 --data " DIR "/train.tok --phase2-sb --out " DIR
               "/x.dlq", o, sizeof o);
    CHECK(rc == 2 && strstr(o, "--phase2-sb is for dlqat and qat"), "--phase2-sb refused for qalora (rc %d): %s", rc, o);
    /* --dampen: recorded in the JSON; refused where there is no trained W' */
    rc = t_run("build/dlqat quantize --model " M " --bits 3 --group 32 --data " DIR "/train.tok --loss kl --phase1-steps 1 --steps 2"
               " --batch 2 --dampen 0.5 --out " DIR "/damp.dlq --json " DIR "/damp.json", o, sizeof o);
    CHECK(rc == 0 && t_json_num(DIR "/damp.json", "dampen") == 0.5, "--dampen runs and is recorded (rc %d): %s", rc, o);
    /* wired into the training: the same seeded run with and without it ends elsewhere */
#define DAMP "build/dlqat quantize --model " M " --bits 3 --group 32 --data " DIR "/train.tok --eval-tokens " DIR \
             "/eval.tok --loss kl --phase1-steps 0 --steps 3 --batch 2 --lr 1e-2"
    rc = t_run(DAMP " --out " DIR "/d0.dlq --json " DIR "/d0.json", o, sizeof o);
    CHECK(rc == 0, "no dampening (rc %d): %s", rc, o);
    rc = t_run(DAMP " --dampen 1000 --out " DIR "/d1.dlq --json " DIR "/d1.json", o, sizeof o);
    CHECK(rc == 0, "dampening (rc %d): %s", rc, o);
    double d0 = t_json_num(DIR "/d0.json", "ppl_after"), d1 = t_json_num(DIR "/d1.json", "ppl_after");
    CHECK(d0 > 1 && d1 > 1 && d0 != d1, "--dampen changes the trained model (ppl %.6f vs %.6f)", d1, d0);
    rc = t_run("build/dlqat quantize --model " M " --method qalora --bits 3 --data " DIR "/train.tok --dampen 1 --out " DIR
               "/x.dlq", o, sizeof o);
    CHECK(rc == 2 && strstr(o, "--dampen is for dlqat and qat"), "--dampen refused for qalora (rc %d): %s", rc, o);

    /* bad input: clear messages, non-zero exit, no crash */
    rc = t_run("build/dlqat quantize --model " M " --bits 3 --data " DIR "/train.tok --loss mse --out " DIR "/x.dlq", o, sizeof o);
    CHECK(rc == 2 && strstr(o, "--loss must be ce, kl or ce+kl"), "bad --loss (rc %d): %s", rc, o);
    rc = t_run("build/dlqat quantize --model " M " --method rtn --bits 4 --train-norms --out " DIR "/x.dlq", o, sizeof o);
    CHECK(rc == 2 && strstr(o, "--train-norms needs a trained method"), "--train-norms with RTN (rc %d): %s", rc, o);
    rc = t_run("build/dlqat ppl --model " M " --text /dev/null --tokens " DIR "/eval.tok", o, sizeof o);
    CHECK(rc == 2 && strstr(o, "one of --text or --tokens"), "both --text and --tokens (rc %d): %s", rc, o);
    /* the checkpoint alone (no tokenizer beside it): text data is refused */
    CHECK(system("cp " M " " DIR "/notok.bin") == 0, "copy the checkpoint");
    rc = t_run("build/dlqat quantize --model " DIR "/notok.bin --bits 3 --data tests/t.h --data-format text --out " DIR "/x.dlq",
               o, sizeof o);
    CHECK(rc != 0 && strstr(o, "no tokenizer"), "text data without a tokenizer (rc %d): %s", rc, o);
    rc = t_run("build/dlqat sample --model " M " --n 2 --len 4096 --out " DIR "/x.tok", o, sizeof o);
    CHECK(rc != 0 && strstr(o, "exceeds the model's context"), "--len beyond the context (rc %d): %s", rc, o);
    if (system("head -c 100 " DIR "/train.tok > " DIR "/trunc.tok") == 0) {
        rc = t_run("build/dlqat ppl --model " M " --tokens " DIR "/trunc.tok", o, sizeof o);
        CHECK(rc != 0 && strstr(o, "trunc.tok") && strstr(o, "header says"), "truncated token file (rc %d): %s", rc, o);
    }
    rc = t_run("build/dlqat sample --model " M " --n 2 --len 8 --out " DIR "/x.tok --frobnicate", o, sizeof o);
    CHECK(rc == 2 && strstr(o, "frobnicate"), "unknown flag (rc %d): %s", rc, o);
    return T_DONE();
}
