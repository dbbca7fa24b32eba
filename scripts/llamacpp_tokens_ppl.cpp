// Perplexity of a GGUF over the rows of a dlqat token file (docs/data.md: "DLQTOK01", u64 rows,
// u32 T, u32 vocab, int32 ids), computed by llama.cpp's library (libllama): every row is one
// sequence from position 0, logits at every position, mean NLL of its T-1 next-token predictions,
// ppl = exp(mean over rows) -- the protocol of `dlqat ppl --tokens`. For models without a
// tokenizer (GGUF tokenizer.ggml.model = none), which llama.cpp's own tools cannot feed.
// Built by scripts/build_llamacpp.sh; used by scripts/check_llamacpp.py --tokens.
//   llamacpp-tokens-ppl MODEL.gguf ROWS.tok [MAX_ROWS]     prints {"ppl": .., "nll": .., "rows": ..}
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *) {
    if (level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf ROWS.tok [MAX_ROWS]\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror(argv[2]); return 1; }
    char magic[8];
    uint64_t rows = 0;
    uint32_t T = 0, vocab = 0;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "DLQTOK01", 8) || fread(&rows, 8, 1, f) != 1 ||
        fread(&T, 4, 1, f) != 1 || fread(&vocab, 4, 1, f) != 1 || T < 2) {
        fprintf(stderr, "%s: not a dlqat token file with a header\n", argv[2]);
        return 1;
    }
    if (argc > 3 && (uint64_t)atoll(argv[3]) < rows) rows = (uint64_t)atoll(argv[3]);
    std::vector<int32_t> ids(rows * T);
    if (fread(ids.data(), 4, ids.size(), f) != ids.size()) { fprintf(stderr, "%s: truncated\n", argv[2]); return 1; }
    fclose(f);

    llama_log_set(quiet, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "%s: llama.cpp cannot load it\n", argv[1]); return 1; }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = T;
    cp.n_batch = T;
    cp.n_ubatch = T;
    cp.n_threads = cp.n_threads_batch = 2;
    llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "cannot create a llama.cpp context of %u\n", T); return 1; }
    const int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
    if ((uint32_t)V < vocab) { fprintf(stderr, "the model's vocabulary %d < the file's %u\n", V, vocab); return 1; }
    llama_batch b = llama_batch_init((int32_t)T, 0, 1);
    double total = 0;
    for (uint64_t r = 0; r < rows; r++) {
        llama_memory_clear(llama_get_memory(ctx), true);
        b.n_tokens = (int32_t)T;
        for (uint32_t i = 0; i < T; i++) {
            b.token[i] = ids[r * T + i];
            b.pos[i] = (llama_pos)i;
            b.n_seq_id[i] = 1;
            b.seq_id[i][0] = 0;
            b.logits[i] = 1;
        }
        if (llama_decode(ctx, b)) { fprintf(stderr, "llama_decode failed on row %llu\n", (unsigned long long)r); return 1; }
        double row = 0;
        for (uint32_t i = 0; i + 1 < T; i++) {
            const float *lg = llama_get_logits_ith(ctx, (int32_t)i);
            double mx = lg[0], s = 0;
            for (int v = 1; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
            for (int v = 0; v < V; v++) s += exp(lg[v] - mx);
            row += mx + log(s) - lg[ids[r * T + i + 1]];
        }
        total += row / (T - 1);
    }
    double nll = total / (double)rows;
    printf("{\"ppl\": %.6f, \"nll\": %.8f, \"rows\": %llu, \"T\": %u}\n", exp(nll), nll, (unsigned long long)rows, T);
    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
