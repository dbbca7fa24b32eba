/* dlqat generate --model M --prompt TEXT [-n N] [--temp T] [--top-p P] [--seed S] */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "model/forward.h"
#include "model/sampler.h"

/* end of generation: EOS, or a control token that chat templates end a turn with (llama.cpp's
   end-of-generation set) */
static int is_eog(const dlq_tokenizer *t, int32_t id) {
    if (id == dlq_tok_eos(t)) return 1;
    if (dlq_tok_type(t, id) != DLQ_TOKTYPE_CONTROL) return 0;
    static const char *eog[] = {"<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>"};
    size_t n;
    const char *p = dlq_tok_piece(t, id, &n);
    for (size_t i = 0; p && i < sizeof eog / sizeof *eog; i++)
        if (n == strlen(eog[i]) && !memcmp(p, eog[i], n)) return 1;
    return 0;
}

int cmd_generate(int argc, char **argv) {
    cli_args a = {argc, argv, 0, "generate", 0};
    const char *adapter = NULL, *model = NULL, *prompt = "", *tok = NULL;
    long long n_new = 64, seed = -1;
    double temp = 0.8, top_p = 0.9;
    int stop_eos = 1;
    while (cli_next(&a)) {
        if (cli_is(&a, "--help", "-h")) {
            printf("usage: dlqat generate --model M --prompt TEXT [options]\n"
                   "  -n N            new tokens (default 64)\n"
                   "  --temp T        temperature; 0 = greedy (default 0.8)\n"
                   "  --top-p P       nucleus sampling (default 0.9; 1 = off)\n"
                   "  --seed S        RNG seed (default: time)\n"
                   "  --no-stop       do not stop at the end-of-sequence token\n"
                   "  --adapter DIR   merge a PEFT LoRA adapter into the model first\n"
                   "  --tokenizer F   tokenizer file\n");
            return 0;
        } else if (cli_is(&a, "--model", "-m")) model = cli_str(&a);
        else if (cli_is(&a, "--prompt", "-p")) prompt = cli_str(&a);
        else if (cli_is(&a, "--tokenizer", NULL)) tok = cli_str(&a);
        else if (cli_is(&a, "--adapter", NULL)) adapter = cli_str(&a);
        else if (cli_is(&a, "-n", "--n")) n_new = cli_int(&a, 0, 1 << 24);
        else if (cli_is(&a, "--temp", NULL)) temp = cli_num(&a, 0, 100);
        else if (cli_is(&a, "--top-p", NULL)) top_p = cli_num(&a, 0, 1);
        else if (cli_is(&a, "--seed", NULL)) seed = cli_int(&a, 0, 1LL << 62);
        else if (cli_is(&a, "--no-stop", NULL)) stop_eos = 0;
        else cli_unknown(&a);
    }
    if (!model) { fprintf(stderr, "dlqat generate: --model is required\n"); return 2; }
    dlq_model *m;
    if (cli_load_model(&m, model, tok, adapter)) return 1;
    if (!m->tok) { fprintf(stderr, "dlqat generate: %s has no tokenizer; pass --tokenizer FILE\n", model); dlq_model_destroy(m); return 1; }
    dlq_err err = {0};
    int32_t *ids;
    size_t np;
    /* BOS as the tokenizer says (SmolLM2's GGUF says none: its BOS is <|im_start|>) */
    if (dlq_tok_encode(m->tok, prompt, strlen(prompt), dlq_tok_add_bos(m->tok), &ids, &np, &err)) {
        fprintf(stderr, "dlqat generate: %s\n", err.msg);
        dlq_model_destroy(m);
        return 1;
    }
    if (np == 0) { /* empty prompt and no BOS: start from BOS anyway */
        ids = realloc(ids, sizeof *ids);
        ids[0] = dlq_tok_bos(m->tok) >= 0 ? dlq_tok_bos(m->tok) : 0;
        np = 1;
    }
    int S = m->cfg.max_seq;
    if ((long long)np + n_new > S) {
        fprintf(stderr, "dlqat generate: prompt (%zu tokens) + %lld new tokens exceed the context of %d; generating %lld\n",
                np, n_new, S, (long long)(S - (long long)np));
        n_new = S - (long long)np;
        if (n_new < 0) { free(ids); dlq_model_destroy(m); return 1; }
    }
    dlq_state *s;
    if (dlq_state_create(&s, m, 1, (int)np, S, &err)) { fprintf(stderr, "dlqat generate: %s\n", err.msg); return 1; }
    int V = m->cfg.vocab_size;
    float *logits = malloc((size_t)V * sizeof(float));
    dlq_sampler sm;
    if (seed < 0) seed = (long long)time(NULL);
    dlq_sampler_init(&sm, V, (float)temp, (float)top_p, (uint64_t)seed);
    char piece[256];
    int32_t prev = -1;
    for (size_t i = 0; i < np; i++) {
        size_t k = dlq_tok_decode_token(m->tok, prev, ids[i], piece, sizeof piece);
        fwrite(piece, 1, k, stdout);
        if (k) prev = ids[i]; /* stays -1 until something visible was printed */
    }
    fflush(stdout);
    double t0 = cli_now();
    int rc = dlq_forward(m, s, ids, 1, (int)np, 0, logits, 1, &err);
    double t1 = cli_now(), t_dec = 0;
    long long made = 0;
    int pos = (int)np;
    while (!rc && made < n_new) {
        int32_t next = dlq_sample(&sm, logits);
        made++;
        if (stop_eos && is_eog(m->tok, next)) break;
        size_t k = dlq_tok_decode_token(m->tok, prev, next, piece, sizeof piece);
        fwrite(piece, 1, k, stdout);
        fflush(stdout);
        if (k) prev = next;
        if (made == n_new || pos >= S) break;
        double ta = cli_now();
        rc = dlq_forward(m, s, &next, 1, 1, pos++, logits, 1, &err);
        t_dec += cli_now() - ta;
    }
    printf("\n");
    fflush(stdout); /* the text and its newline before the stderr summary */
    if (rc) fprintf(stderr, "dlqat generate: %s\n", err.msg);
    else
        fprintf(stderr, "[generate] prompt %zu tokens at %.0f tok/s; %lld new tokens, decode %.1f tok/s; seed %lld\n", np,
                np / (t1 - t0), made, made > 1 ? (made - 1) / t_dec : 0.0, seed);
    free(logits);
    free(ids);
    dlq_sampler_free(&sm);
    dlq_state_destroy(s);
    dlq_model_destroy(m);
    return rc ? 1 : 0;
}
