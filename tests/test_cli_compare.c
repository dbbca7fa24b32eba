/* `dlqat compare` end to end on the shipped stories260K with token files (a
 * few steps per method): every method runs as a subprocess, the report holds
 * FP, the FP + LoRA control and each method with a finite perplexity, trainable
 * parameters and peak RSS, and the plots are written; the row length comes
 * from the token file (no --seq). Also: a bad method name
 * is refused before anything runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "t.h"

#define M "models/stories260K/stories260K.bin"
#define DIR "build/tests/cli_compare"

int main(void) {
    static char o[1 << 17];
    if (system("rm -rf " DIR " && mkdir -p " DIR) != 0) { CHECK(0, "mkdir"); return T_DONE(); }
    int rc = t_run("build/dlqat sample --model " M " --n 16 --len 32 --seed 1 --out " DIR "/train.tok", o, sizeof o);
    CHECK(rc == 0, "sample: %s", o);
    rc = t_run("build/dlqat sample --model " M " --n 4 --len 32 --seed 2 --out " DIR "/eval.tok", o, sizeof o);
    CHECK(rc == 0, "sample: %s", o);
    rc = t_run("build/dlqat compare --model " M " --bits 4 --group 32 --data " DIR "/train.tok --eval-tokens " DIR
             "/eval.tok --methods rtn,gptq,qalora,qat,dlqat --phase1-steps 1 --steps 2 --batch 2 --calib 4 --out " DIR "/cmp",
             o, sizeof o);
    CHECK(rc == 0, "compare (rc %d): %s", rc, o + (strlen(o) > 3000 ? strlen(o) - 3000 : 0));
    json_error_t je;
    json_t *j = json_load_file(DIR "/cmp/compare.json", 0, &je);
    CHECK(j != NULL, "compare.json: %s", je.text);
    if (j) {
        const char *want[] = {"fp", "control", "rtn", "gptq", "qalora", "qat", "dlqat"};
        char *dump = json_dumps(j, 0);
        for (int i = 0; i < 7; i++) {
            char key[64];
            snprintf(key, sizeof key, "\"%s\"", want[i]);
            CHECK(dump && strstr(dump, key), "compare.json names %s", want[i]);
        }
        CHECK(dump && !strstr(dump, "NaN") && !strstr(dump, "nan"), "no NaN in compare.json");
        free(dump);
        json_decref(j);
    }
    FILE *f = fopen(DIR "/cmp/compare.md", "r");
    if (f) {
        size_t n = fread(o, 1, sizeof o - 1, f);
        o[n] = 0;
        fclose(f);
        CHECK(strstr(o, "| FP + LoRA (control) |") && strstr(o, "| GPTQ |") && strstr(o, "| QA-LoRA |") &&
                  strstr(o, "| full QAT |") && strstr(o, "DL-QAT") && strstr(o, "peak RSS"),
              "compare.md has every row: %s", o);
    } else CHECK(0, "no compare.md");
    f = fopen(DIR "/cmp/ppl.svg", "r");
    CHECK(f != NULL, "ppl.svg written");
    if (f) fclose(f);
    rc = t_run("build/dlqat compare --model " M " --bits 4 --group 32 --data " DIR "/train.tok --eval-tokens " DIR
             "/eval.tok --methods rtn,awq --out " DIR "/bad", o, sizeof o);
    CHECK(rc == 2 && strstr(o, "awq"), "unknown method refused (rc %d): %s", rc, o);
    return T_DONE();
}
