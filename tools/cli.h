/* Shared helpers for the dlqat subcommands: flag parsing, progress lines,
 * model loading with a readable error. Only the CLI prints and exits. */
#ifndef DLQ_TOOLS_CLI_H
#define DLQ_TOOLS_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "model/model.h"

/* Flag parser: call cli_flag() for each known flag; it consumes the value.
 * Unknown flags are reported by cli_unknown(). */
typedef struct cli_args {
    int argc;
    char **argv;
    int i;
    const char *cmd;
    int bad;
} cli_args;

int cli_next(cli_args *a);                              /* advances; 0 when done */
int cli_is(cli_args *a, const char *name, const char *alias); /* current arg is this flag */
const char *cli_str(cli_args *a);                       /* value of the current flag */
long long cli_int(cli_args *a, long long lo, long long hi);
double cli_num(cli_args *a, double lo, double hi);
void cli_unknown(cli_args *a);

void cli_progress(const char *tag, int64_t done, int64_t total, double elapsed, double items_per_unit,
                  const char *rate_unit);
double cli_now(void);
long cli_peak_rss_kb(void);

int cli_load_model(dlq_model **m, const char *path, const char *tokenizer, const char *adapter);
/* Reads a whole text file; exits with a message on failure. */
char *cli_read_text(const char *path, size_t *len);
/* Writes a JSON string to path (atomic rename); prints error and returns non-zero on failure. */
int cli_write_json(const char *path, const char *json);

struct dlq_step_info;
/* progress line for training steps: step, loss, lr, tokens/s, ETA */
/* Removes a folder and everything under it (a run's work folder); 0 on success. */
int cli_remove_tree(const char *dir);

/* run_total: the last step of the whole run (all phases), for a whole-run ETA; 0 = the phase's own end */
void cli_train_progress(const char *tag, const struct dlq_step_info *s, long long run_total);
/* on_step callback writing a metrics line and the progress line; user is a cli_trainlog */
struct dlq_metrics;
typedef struct cli_trainlog {
    struct dlq_metrics *metrics; /* may be NULL */
    const char *tag;
    long long run_total; /* last step of the whole run (all phases); 0: the phase's end */
} cli_trainlog;
void cli_log_step(void *user, const struct dlq_step_info *s);

int cmd_info(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_ppl(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_eval(int argc, char **argv);

#endif
