/* End-to-end data-free path through the CLI on the shipped stories260K (no
 * tokenizer): sample -> info -> ppl --tokens -> quantize --loss kl on the
 * token file -> ppl of the .dlq; and clear errors for bad input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"

#define M "models/stories260K/stories260K.bin"
#define DIR "build/tests/cli_datafree"

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
    FILE *f = fopen(DIR "/w3.json", "r");
    if (f) {
        size_t n = fread(o, 1, sizeof o - 1, f);
        o[n] = 0;
        fclose(f);
        CHECK(strstr(o, "\"loss\": \"kl\"") && strstr(o, "\"seq\": 64"), "run JSON records the loss and the file's row length: %s", o);
    } else CHECK(0, "no run JSON");
    rc = t_run("build/dlqat ppl --model " DIR "/w3.dlq --tokens " DIR "/eval.tok", o, sizeof o);
    CHECK(rc == 0 && strstr(o, "| 64 | 8 | 512 |"), "ppl of the .dlq on tokens (rc %d): %s", rc, o);

    /* bad input: clear messages, non-zero exit, no crash */
    rc = t_run("build/dlqat quantize --model " M " --bits 3 --data " DIR "/train.tok --loss mse --out " DIR "/x.dlq", o, sizeof o);
    CHECK(rc == 2 && strstr(o, "--loss must be ce, kl or ce+kl"), "bad --loss (rc %d): %s", rc, o);
    rc = t_run("build/dlqat ppl --model " M " --text /dev/null --tokens " DIR "/eval.tok", o, sizeof o);
    CHECK(rc == 2 && strstr(o, "one of --text or --tokens"), "both --text and --tokens (rc %d): %s", rc, o);
    rc = t_run("build/dlqat quantize --model " M " --bits 3 --data tests/t.h --data-format text --out " DIR "/x.dlq", o, sizeof o);
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
