/* Crash-safe training checkpoints (.dlqc): named fp32 arrays (trainable
 * parameters, AdamW moments, ...) + an opaque JSON metadata string (step, run
 * config, data position, RNG state: whatever the trainer wants), protected by
 * a CRC-32C over every byte. Format (docs/checkpoints.md), little-endian:
 *
 *   [0, 64)   header: magic "DLQCKPT\0", u32 version (1), u32 header size
 *             (64), u64 file size, u64 tensor count, u64 meta offset,
 *             u64 meta length, u64 index offset, u64 index length
 *   meta      meta-length bytes (no NUL), zero-padded to 8
 *   index     per tensor: u64 data offset, u64 element count, u32 name
 *             length, u32 0, name bytes (no NUL), zero-padded to 8
 *   data      each tensor's count x f32, starting at a 64-byte aligned offset
 *   trailer   last 16 bytes: u32 CRC-32C (Castagnoli, reflected, init and
 *             xorout 0xffffffff) of bytes [0, size - 16), u32 0, "DLQCEND\0"
 *
 * Writes are atomic (path.tmp, fsync, rename, fsync of the directory): a crash
 * leaves either the old file or the new one. The reader validates the magic,
 * version, sizes and checksum, then every offset and name, before returning.
 */
#ifndef DLQ_TRAIN_CHECKPOINT_H
#define DLQ_TRAIN_CHECKPOINT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define DLQ_CKPT_VERSION 1
#define DLQ_CKPT_MAX_NAME 1024
#define DLQ_CKPT_LATEST "ckpt-latest.dlqc"
#define DLQ_CKPT_PREV "ckpt-prev.dlqc"

/* CRC-32C (Castagnoli), software slice-by-8. Start with crc = 0; feed pieces
 * in order: dlq_crc32c(dlq_crc32c(0, a, na), b, nb) == dlq_crc32c(0, ab, na+nb).
 * dlq_crc32c(0, "123456789", 9) == 0xe3069283. */
uint32_t dlq_crc32c(uint32_t crc, const void *data, size_t n);

/* ---- writing ---- */
typedef struct dlq_ckpt_writer dlq_ckpt_writer;

int dlq_ckpt_writer_new(dlq_ckpt_writer **out, dlq_err *err);
/* Records a tensor. The data is NOT copied: it must stay valid and unchanged
 * until commit. Names are non-empty, unique, at most DLQ_CKPT_MAX_NAME bytes,
 * without NUL. n may be 0. */
int dlq_ckpt_add(dlq_ckpt_writer *w, const char *name, const float *data, size_t n, dlq_err *err);
/* Sets (copies) the metadata string, normally a JSON object; NULL clears it. */
int dlq_ckpt_set_meta(dlq_ckpt_writer *w, const char *json, dlq_err *err);
/* Writes everything to path atomically (path.tmp, fsync, rename, fsync dir).
 * The writer can be committed again (e.g. to a second path). */
int dlq_ckpt_commit(dlq_ckpt_writer *w, const char *path, dlq_err *err);
/* Rotation in dir (created if missing): writes dir/ckpt-latest.dlqc.tmp in
 * full, then renames the current latest to ckpt-prev.dlqc (only if that
 * latest is itself valid: a damaged latest never replaces a good prev), then
 * renames the new file to ckpt-latest.dlqc, fsyncing the directory after
 * each step. A crash at any point leaves a valid latest or prev. */
int dlq_ckpt_save_rotating(dlq_ckpt_writer *w, const char *dir, dlq_err *err);
void dlq_ckpt_writer_free(dlq_ckpt_writer *w);

/* ---- reading ---- */
typedef struct dlq_ckpt dlq_ckpt;

/* Maps and fully validates path. On a damaged file nothing is returned and
 * err says what is wrong (e.g. "checksum mismatch: file is damaged"). */
int dlq_ckpt_read(const char *path, dlq_ckpt **out, dlq_err *err);
/* The tensor's data (64-byte aligned, read-only, valid until dlq_ckpt_free)
 * and its element count, or NULL if absent. */
const float *dlq_ckpt_find(const dlq_ckpt *ck, const char *name, size_t *n);
/* Same, but copies exactly n floats into dst; an error names the checkpoint
 * and the tensor if it is missing or has another size. */
int dlq_ckpt_copy(const dlq_ckpt *ck, const char *name, float *dst, size_t n, dlq_err *err);
/* NUL-terminated metadata ("" if none was stored). */
const char *dlq_ckpt_meta(const dlq_ckpt *ck);
size_t dlq_ckpt_count(const dlq_ckpt *ck);
/* i-th tensor in file order; returns its name, sets *data / *n. */
const char *dlq_ckpt_tensor(const dlq_ckpt *ck, size_t i, const float **data, size_t *n);
const char *dlq_ckpt_path(const dlq_ckpt *ck);
void dlq_ckpt_free(dlq_ckpt *ck);

typedef struct dlq_ckpt_load_info {
    char path[1024];    /* the file that was loaded */
    int fell_back;      /* 1 if latest was missing or damaged and prev was used */
    char latest_error[1024]; /* why latest was not used (when fell_back) */
} dlq_ckpt_load_info;

/* Loads dir/ckpt-latest.dlqc; if it is missing or damaged, loads
 * dir/ckpt-prev.dlqc and reports the fallback in *info (may be NULL).
 * DLQ_EIO with "no checkpoint" when neither exists. */
int dlq_ckpt_load_latest(const char *dir, dlq_ckpt **out, dlq_ckpt_load_info *info, dlq_err *err);

/* SIGINT / SIGTERM (via sigaction, SA_RESTART) set *flag = 1; the trainer
 * polls it and saves at the next step boundary. SA_RESETHAND: a second signal
 * gets the default action (terminates at once). The handler only writes
 * through a static pointer to the caller's flag (the one piece of static
 * state in this module; installing again replaces it). */
int dlq_install_stop_signals(volatile sig_atomic_t *flag, dlq_err *err);

#endif
