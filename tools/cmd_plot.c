/* dlqat plot LOG [LOG ...] --out loss.svg [--key loss] [--x step] [--title T]
 *            [--label L ...] [--log-y] [--width W] [--height H]
 * Draws one curve per JSONL metrics log (src/train/metrics.h) as a standalone
 * SVG: axes, "nice" ticks, grid, legend, title. Lines holding "val_<key>"
 * are drawn as markers. Dense curves are reduced to the min/max per pixel
 * column so spikes stay visible. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct pts { double *x, *y; size_t n, cap; } pts;

typedef struct series {
    const char *path;
    const char *label;
    pts line, val;
} series;

static int pts_add(pts *p, double x, double y) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        double *nx = realloc(p->x, cap * sizeof *nx);
        if (!nx) return -1;
        p->x = nx;
        double *ny = realloc(p->y, cap * sizeof *ny);
        if (!ny) return -1;
        p->y = ny;
        p->cap = cap;
    }
    p->x[p->n] = x;
    p->y[p->n++] = y;
    return 0;
}

static int get_num(json_t *o, const char *k, double *v) {
    json_t *j = json_object_get(o, k);
    if (!json_is_number(j)) return 0;
    *v = json_number_value(j);
    return isfinite(*v);
}

/* Reads one log. Returns 0, or 1 after printing an error. */
static int read_log(series *s, const char *xkey, const char *ykey, const char *vkey, int log_y) {
    size_t len;
    char *text = cli_read_text(s->path, &len);
    long bad = 0, lineno = 0, nonpos = 0;
    char *p = text, *end = text + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        lineno++;
        if (ll) {
            json_error_t je;
            json_t *o = json_loadb(p, ll, 0, &je);
            double x, y;
            if (!json_is_object(o)) bad++;
            else if (get_num(o, xkey, &x)) {
                if (get_num(o, ykey, &y)) {
                    if (log_y && !(y > 0)) nonpos++;
                    else if (pts_add(&s->line, x, y)) { fprintf(stderr, "dlqat plot: out of memory\n"); exit(1); }
                }
                if (vkey && get_num(o, vkey, &y)) {
                    if (log_y && !(y > 0)) nonpos++;
                    else if (pts_add(&s->val, x, y)) { fprintf(stderr, "dlqat plot: out of memory\n"); exit(1); }
                }
            }
            json_decref(o);
        }
        p += ll + 1;
    }
    free(text);
    if (bad) fprintf(stderr, "dlqat plot: %s: skipped %ld line(s) that are not JSON objects\n", s->path, bad);
    if (nonpos) fprintf(stderr, "dlqat plot: %s: skipped %ld value(s) <= 0 (log scale)\n", s->path, nonpos);
    if (!s->line.n && !s->val.n)
        fprintf(stderr, "dlqat plot: %s: no lines with numeric \"%s\" and \"%s\"\n", s->path, xkey, ykey);
    return 0;
}

/* 1, 2, 5 x 10^k >= raw */
static double nice_step(double raw) {
    double e = pow(10, floor(log10(raw))), f = raw / e;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * e;
}

static void fmt_num(char *b, size_t cap, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0;
    double a = fabs(v);
    if (a >= 1e4 && fmod(a, 1000) == 0 && a < 1e9) {
        if (fmod(a, 1e6) == 0) snprintf(b, cap, "%gM", v / 1e6);
        else snprintf(b, cap, "%gk", v / 1e3);
        return;
    }
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (step * pow(10, dec) - floor(step * pow(10, dec) + 1e-9) > 1e-6) dec++; /* 2.5 steps */
    if (a != 0 && (a < 1e-4 || a >= 1e9)) snprintf(b, cap, "%.3g", v);
    else snprintf(b, cap, "%.*f", dec < 0 ? 0 : dec > 8 ? 8 : dec, v);
}

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else if ((unsigned char)*s < 0x20) fputc(' ', f);
        else fputc(*s, f);
    }
}

static const char *basename_of(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

typedef struct axis {
    double lo, hi;     /* data range mapped to the axis */
    int log;
    double ticks[64];
    int nt;
    double step;       /* for label formatting */
} axis;

static double tr(const axis *a, double v) { return a->log ? log10(v) : v; }

static void lin_ticks(axis *a, double lo, double hi, int target, int pad) {
    if (!(hi > lo)) { double d = lo != 0 ? fabs(lo) * 0.05 : 1; lo -= d; hi += d; }
    if (pad) { double d = (hi - lo) * 0.04; lo -= d; hi += d; }
    double st = nice_step((hi - lo) / target);
    a->step = st;
    a->nt = 0;
    for (double t = ceil(lo / st - 1e-9) * st; t <= hi + st * 1e-9 && a->nt < 64; t += st) a->ticks[a->nt++] = t;
    a->lo = lo;
    a->hi = hi;
}

static void log_ticks(axis *a, double lo, double hi) {
    a->log = 1;
    if (!(hi > lo)) { lo /= 1.2; hi *= 1.2; }
    double l0 = log10(lo), l1 = log10(hi), pad = (l1 - l0) * 0.04;
    a->lo = pow(10, l0 - pad);
    a->hi = pow(10, l1 + pad);
    a->nt = 0;
    if (hi / lo < 10) { /* within about a decade: linear nice values on the log axis */
        double st = nice_step((a->hi - a->lo) / 5);
        a->step = st;
        for (double t = ceil(a->lo / st - 1e-9) * st; t <= a->hi && a->nt < 64; t += st)
            if (t > 0) a->ticks[a->nt++] = t;
        return;
    }
    int dec = (int)(ceil(log10(a->hi)) - floor(log10(a->lo)));
    static const double m3[] = {1, 2, 5}, m1[] = {1};
    const double *m = dec <= 3 ? m3 : m1;
    int nm = dec <= 3 ? 3 : 1, every = dec > 8 ? (dec + 7) / 8 : 1;
    for (int e = (int)floor(log10(a->lo)); e <= (int)ceil(log10(a->hi)); e++) {
        if ((e % every) != 0) continue;
        for (int k = 0; k < nm; k++) {
            double t = m[k] * pow(10, e);
            if (t >= a->lo && t <= a->hi && a->nt < 64) a->ticks[a->nt++] = t;
        }
    }
    a->step = 0;
}

static const char *const COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                     "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};

int cmd_plot(int argc, char **argv) {
    cli_args a = {argc, argv, 0, "plot", 0};
    const char *out = NULL, *key = "loss", *xkey = "step", *title = NULL;
    const char *files[64], *labels[64];
    int nf = 0, nl = 0, log_y = 0, smooth = 1;
    double W = 900, H = 540;
    while (cli_next(&a)) {
        if (cli_is(&a, "--help", "-h")) {
            printf("usage: dlqat plot LOG [LOG ...] --out FILE.svg [options]\n"
                   "  LOG            JSONL metrics log (one JSON object per line)\n"
                   "  --out FILE     SVG to write\n"
                   "  --key K        value to plot (default loss); \"val_K\" is drawn as markers\n"
                   "  --x K          x value (default step)\n"
                   "  --label L      legend label for the next log (repeat; default: file name)\n"
                   "  --title T      title\n"
                   "  --log-y        logarithmic y axis\n"
                   "  --smooth N     draw the moving average of the last N points (markers stay raw)\n"
                   "  --width W, --height H   size in pixels (default 900 x 540)\n");
            return 0;
        } else if (cli_is(&a, "--out", "-o")) out = cli_str(&a);
        else if (cli_is(&a, "--key", NULL)) key = cli_str(&a);
        else if (cli_is(&a, "--x", NULL)) xkey = cli_str(&a);
        else if (cli_is(&a, "--title", NULL)) title = cli_str(&a);
        else if (cli_is(&a, "--log-y", NULL)) log_y = 1;
        else if (cli_is(&a, "--smooth", NULL)) smooth = (int)cli_int(&a, 1, 100000);
        else if (cli_is(&a, "--width", NULL)) W = cli_num(&a, 200, 10000);
        else if (cli_is(&a, "--height", NULL)) H = cli_num(&a, 150, 10000);
        else if (cli_is(&a, "--label", NULL)) {
            const char *l = cli_str(&a);
            if (nl < 64) labels[nl++] = l;
        } else if (a.argv[a.i][0] != '-') {
            if (nf == 64) { fprintf(stderr, "dlqat plot: at most 64 logs\n"); return 2; }
            files[nf++] = a.argv[a.i];
        } else cli_unknown(&a);
    }
    if (a.bad) return 2;
    if (!nf || !out) { fprintf(stderr, "dlqat plot: need at least one LOG and --out FILE.svg (see --help)\n"); return 2; }
    if (nl > nf) fprintf(stderr, "dlqat plot: %d labels for %d logs; extra labels ignored\n", nl, nf);
    char vkey[256];
    int has_vkey = strncmp(key, "val_", 4) != 0 && snprintf(vkey, sizeof vkey, "val_%s", key) < (int)sizeof vkey;

    series *S = calloc((size_t)nf, sizeof *S);
    if (!S) { fprintf(stderr, "dlqat plot: out of memory\n"); return 1; }
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    int any_val = 0;
    size_t total = 0;
    for (int i = 0; i < nf; i++) {
        S[i].path = files[i];
        S[i].label = i < nl ? labels[i] : basename_of(files[i]);
        read_log(&S[i], xkey, key, has_vkey ? vkey : NULL, log_y);
        if (smooth > 1 && S[i].line.n > 1) { /* trailing moving average, in place (running sum of the raw values) */
            double sum = 0, *raw = malloc(S[i].line.n * sizeof *raw);
            if (raw) {
                memcpy(raw, S[i].line.y, S[i].line.n * sizeof *raw);
                for (size_t j = 0; j < S[i].line.n; j++) {
                    sum += raw[j];
                    if (j >= (size_t)smooth) sum -= raw[j - (size_t)smooth];
                    S[i].line.y[j] = sum / (double)(j + 1 < (size_t)smooth ? j + 1 : (size_t)smooth);
                }
                free(raw);
            }
        }
        pts *ps[2] = {&S[i].line, &S[i].val};
        for (int k = 0; k < 2; k++)
            for (size_t j = 0; j < ps[k]->n; j++) {
                x0 = fmin(x0, ps[k]->x[j]); x1 = fmax(x1, ps[k]->x[j]);
                y0 = fmin(y0, ps[k]->y[j]); y1 = fmax(y1, ps[k]->y[j]);
            }
        any_val |= S[i].val.n > 0;
        total += S[i].line.n + S[i].val.n;
    }
    if (!total) { fprintf(stderr, "dlqat plot: nothing to plot\n"); return 1; }

    axis ax = {0}, ay = {0};
    lin_ticks(&ax, x0, x1, 8, 0);
    if (ax.nt && ax.ticks[0] > ax.lo) { /* start x at a tick when the data starts near one */
        double t = ax.ticks[0] - ax.step;
        if (x0 - t < ax.step * 0.5 && t >= 0) { ax.lo = t; memmove(ax.ticks + 1, ax.ticks, (size_t)ax.nt * sizeof(double)); ax.ticks[0] = t; ax.nt++; }
    }
    if (log_y) log_ticks(&ay, y0, y1);
    else lin_ticks(&ay, y0, y1, 6, 1);

    /* layout */
    double ml = 78, mr = 24, mt = title ? 52 : 24, mb = 58;
    double pw = W - ml - mr, ph = H - mt - mb;
    double tx0 = tr(&ax, ax.lo), tx1 = tr(&ax, ax.hi), ty0 = tr(&ay, ay.lo), ty1 = tr(&ay, ay.hi);
#define PX(v) (ml + (tr(&ax, (v)) - tx0) / (tx1 - tx0) * pw)
#define PY(v) (mt + ph - (tr(&ay, (v)) - ty0) / (ty1 - ty0) * ph)

    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    FILE *f = fopen(tmp, "w");
    if (!f) { fprintf(stderr, "dlqat plot: %s: cannot create\n", tmp); return 1; }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" viewBox=\"0 0 %g %g\" "
               "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n", W, H, W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    if (title) {
        fprintf(f, "<text x=\"%.1f\" y=\"30\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\" fill=\"#222\">", ml + pw / 2);
        xml_text(f, title);
        fputs("</text>\n", f);
    }
    /* grid + ticks */
    fprintf(f, "<g stroke=\"#e4e4e4\" stroke-width=\"1\">\n");
    for (int i = 0; i < ax.nt; i++) fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n", PX(ax.ticks[i]), mt, PX(ax.ticks[i]), mt + ph);
    for (int i = 0; i < ay.nt; i++) fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n", ml, PY(ay.ticks[i]), ml + pw, PY(ay.ticks[i]));
    fprintf(f, "</g>\n<g fill=\"#444\">\n");
    char b[64];
    for (int i = 0; i < ax.nt; i++) {
        fmt_num(b, sizeof b, ax.ticks[i], ax.step);
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#444\"/>", PX(ax.ticks[i]), mt + ph, PX(ax.ticks[i]), mt + ph + 5);
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">%s</text>\n", PX(ax.ticks[i]), mt + ph + 19, b);
    }
    for (int i = 0; i < ay.nt; i++) {
        double t = ay.ticks[i];
        if (ay.step > 0) fmt_num(b, sizeof b, t, ay.step);
        else snprintf(b, sizeof b, "%g", t);
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#444\"/>", ml - 5, PY(t), ml, PY(t));
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\">%s</text>\n", ml - 8, PY(t) + 4, b);
    }
    fprintf(f, "</g>\n");
    /* axis titles */
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\" fill=\"#222\">", ml + pw / 2, H - 14);
    xml_text(f, xkey);
    fprintf(f, "</text>\n<text transform=\"translate(18,%.1f) rotate(-90)\" text-anchor=\"middle\" font-size=\"13\" fill=\"#222\">",
            mt + ph / 2);
    xml_text(f, key);
    if (log_y) fputs(" (log scale)", f);
    fputs("</text>\n", f);
    /* curves, clipped to the plot area */
    fprintf(f, "<defs><clipPath id=\"plot\"><rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"/></clipPath></defs>\n",
            ml, mt, pw, ph);
    fprintf(f, "<g clip-path=\"url(#plot)\" fill=\"none\" stroke-linejoin=\"round\" stroke-linecap=\"round\">\n");
    for (int i = 0; i < nf; i++) {
        const char *col = COLORS[i % 10];
        pts *l = &S[i].line;
        if (l->n == 1) /* a lone point is invisible as a polyline */
            fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\" stroke=\"none\"/>\n", PX(l->x[0]), PY(l->y[0]), col);
        else if (l->n) {
            fprintf(f, "<polyline stroke=\"%s\" stroke-width=\"1.4\" opacity=\"0.85\" points=\"", col);
            /* per pixel column (0.5 px): first, min, max, last in order of occurrence */
            size_t j = 0, emitted = 0;
            while (j < l->n) {
                double col_px = floor(PX(l->x[j]) * 2);
                size_t k = j, imin = j, imax = j;
                while (k < l->n && floor(PX(l->x[k]) * 2) == col_px) {
                    if (l->y[k] < l->y[imin]) imin = k;
                    if (l->y[k] > l->y[imax]) imax = k;
                    k++;
                }
                size_t idx[4] = {j, imin < imax ? imin : imax, imin < imax ? imax : imin, k - 1};
                for (int q = 0; q < 4; q++) {
                    if (q && idx[q] == idx[q - 1]) continue;
                    fprintf(f, "%s%.2f,%.2f", emitted++ % 8 ? " " : "\n", PX(l->x[idx[q]]), PY(l->y[idx[q]]));
                }
                j = k;
            }
            fputs("\"/>\n", f);
        }
    }
    for (int i = 0; i < nf; i++) { /* validation points on top of every training curve */
        const char *col = COLORS[i % 10];
        pts *v = &S[i].val;
        if (v->n) {
            if (v->n > 1) {
                fprintf(f, "<polyline stroke=\"%s\" stroke-width=\"1.5\" stroke-dasharray=\"5 3\" points=\"", col);
                for (size_t j = 0; j < v->n; j++) fprintf(f, "%s%.2f,%.2f", j % 8 ? " " : "\n", PX(v->x[j]), PY(v->y[j]));
                fputs("\"/>\n", f);
            }
            for (size_t j = 0; j < v->n; j++)
                fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"4.5\" fill=\"white\" stroke=\"%s\" stroke-width=\"2.2\"/>\n",
                        PX(v->x[j]), PY(v->y[j]), col);
        }
    }
    fputs("</g>\n", f);
    /* frame */
    fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" stroke=\"#444\"/>\n", ml, mt, pw, ph);
    /* legend (top right inside the plot) */
    int rows = 0;
    size_t maxlab = 0;
    for (int i = 0; i < nf; i++) {
        size_t L = strlen(S[i].label) + (S[i].val.n ? strlen(vkey) + 3 : 0);
        if (L > maxlab) maxlab = L;
        rows += (S[i].line.n > 0) + (S[i].val.n > 0);
    }
    double lw = 44 + (double)(maxlab > 60 ? 60 : maxlab) * 6.8, lh = 10 + rows * 19, lx = ml + pw - lw - 10, ly = mt + 10;
    fprintf(f, "<g font-size=\"12\" fill=\"#222\">\n<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" rx=\"4\" "
               "fill=\"white\" fill-opacity=\"0.9\" stroke=\"#bbb\"/>\n", lx, ly, lw, lh);
    int r = 0;
    for (int i = 0; i < nf; i++) {
        const char *col = COLORS[i % 10];
        if (S[i].line.n) {
            double yy = ly + 15 + r * 19;
            fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" stroke-width=\"2.2\"/>", lx + 8, yy, lx + 32, yy, col);
            fprintf(f, "<text x=\"%.2f\" y=\"%.2f\">", lx + 38, yy + 4);
            xml_text(f, S[i].label);
            fputs("</text>\n", f);
            r++;
        }
        if (S[i].val.n) {
            double yy = ly + 15 + r * 19;
            fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"4.5\" fill=\"white\" stroke=\"%s\" stroke-width=\"2.2\"/>", lx + 20, yy, col);
            fprintf(f, "<text x=\"%.2f\" y=\"%.2f\">", lx + 38, yy + 4);
            xml_text(f, S[i].label);
            fputs(" (", f);
            xml_text(f, vkey);
            fputs(")</text>\n", f);
            r++;
        }
    }
    fputs("</g>\n</svg>\n", f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, out) != 0) {
        fprintf(stderr, "dlqat plot: %s: write failed\n", out);
        remove(tmp);
        return 1;
    }
    (void)any_val;
    fprintf(stderr, "dlqat plot: wrote %s (%d log%s, %zu points)\n", out, nf, nf == 1 ? "" : "s", total);
    for (int i = 0; i < nf; i++) { free(S[i].line.x); free(S[i].line.y); free(S[i].val.x); free(S[i].val.y); }
    free(S);
    return 0;
}
