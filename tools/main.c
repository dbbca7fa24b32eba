/* dlqat command-line tool: each subcommand lives in tools/cmd_*.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/version.h"
#include "kernels/blas_env.h"
#include "kernels/qkernels.h"

/* dlqat --version: the version, the compiler, the BLAS and its kernel set, the ISA of our kernels */
static int version(void) {
    char blas[256];
    dlq_blas_describe(blas, sizeof blas);
    printf("dlqat %s\n", DLQ_VERSION);
#if defined(__clang__)
    printf("compiler  clang %s\n", __clang_version__);
#elif defined(__GNUC__)
    printf("compiler  gcc %s\n", __VERSION__);
#endif
    printf("blas      %s\n", blas);
    const char *ct = getenv("OPENBLAS_CORETYPE"), *sp = getenv("GOMP_SPINCOUNT"), *wp = getenv("OMP_WAIT_POLICY");
    printf("env       OPENBLAS_CORETYPE=%s GOMP_SPINCOUNT=%s OMP_WAIT_POLICY=%s%s\n", ct ? ct : "(unset)",
           sp ? sp : "(unset)", wp ? wp : "(unset)", getenv("DLQ_REEXEC") ? " (set by dlqat at start)" : "");
    printf("kernels   %s (packed low-bit; DLQ_ISA caps it)\n", dlq_qisa_name(dlq_qisa_active()));
    return 0;
}

static void usage(FILE *f) {
    fprintf(f,
            "dlqat: low-bit LLaMA models by weight-decomposed low-rank QAT\n"
            "\n"
            "usage: dlqat <command> [options]\n"
            "\n"
            "commands:\n"
            "  info MODEL                     describe a model (HF folder, llama2.c .bin, .gguf)\n"
            "  ppl --model M --text FILE      perplexity (GPTQ protocol: non-overlapping windows)\n"
            "  generate --model M --prompt P  generate text (greedy or sampled)\n"
            "  eval --model M --tasks LIST    lm-eval-style multiple choice, MMLU k-shot, WikiText-2 ppl\n"
            "  plot LOG [LOG ...] --out F.svg plot training curves from JSONL metrics logs\n"
            "  finetune --model M --data F --out DIR   full fine-tuning or LoRA (PEFT adapter)\n"
            "  quantize --model M --bits N --group G --data F --out OUT.dlq   RTN or DL-QAT to a low-bit .dlq\n"
            "  compare --model M --bits N --group G --data F --eval-text F --out DIR   all methods, one table\n"
            "  sample --model M --n N --len T --out F.tok   sample token rows (data-free QAT data)\n"
            "  export --model M.dlq --format gguf|hf|gptq --out PATH   for llama.cpp / transformers / AutoGPTQ\n"
            "\n"
            "  --version                      version, BLAS kernel set, ISA\n"
            "\n"
            "Run 'dlqat <command> --help' for a command's options.\n");
}

int main(int argc, char **argv) {
    dlq_env_reexec(argv); /* the BLAS kernel set and OpenMP waiting: see kernels/blas_env.h */
    if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version"))) return version();
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *c = argv[1];
    if (!strcmp(c, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(c, "ppl")) return cmd_ppl(argc - 1, argv + 1);
    if (!strcmp(c, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(c, "plot")) return cmd_plot(argc - 1, argv + 1);
    if (!strcmp(c, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(c, "finetune")) return cmd_finetune(argc - 1, argv + 1);
    if (!strcmp(c, "quantize")) return cmd_quantize(argc - 1, argv + 1);
    if (!strcmp(c, "compare")) return cmd_compare(argc - 1, argv + 1);
    if (!strcmp(c, "sample")) return cmd_sample(argc - 1, argv + 1);
    if (!strcmp(c, "export")) return cmd_export(argc - 1, argv + 1);
    fprintf(stderr, "dlqat: unknown command '%s'\n\n", c);
    usage(stderr);
    return 2;
}
