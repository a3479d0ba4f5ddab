/* Helpers shared by the C tests (header-only; every function is static inline). */
#ifndef EMBER_TEST_COMMON_H
#define EMBER_TEST_COMMON_H
#include "ember.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0, passes = 0;
#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (cond) {                                                        \
            passes++;                                                      \
        } else {                                                           \
            failures++;                                                    \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
        }                                                                  \
    } while (0)

static inline unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Leave-one-out 10-NN accuracy of a 2-D embedding. */
static inline double knn_accuracy(const float *y, const unsigned char *labels, size_t n) {
    size_t correct = 0;
    for (size_t i = 0; i < n; i++) {
        double best_d[10]; size_t best_j[10]; size_t m = 0;
        for (size_t j = 0; j < n; j++) {
            if (j == i) continue;
            double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1], d = dx * dx + dy * dy;
            if (m < 10 || d < best_d[m - 1]) {
                size_t p = m < 10 ? m++ : 9;
                while (p > 0 && best_d[p - 1] > d) { best_d[p] = best_d[p - 1]; best_j[p] = best_j[p - 1]; p--; }
                best_d[p] = d; best_j[p] = j;
            }
        }
        int votes[10] = {0};
        for (size_t q = 0; q < m; q++) votes[labels[best_j[q]]]++;
        int arg = 0;
        for (int c = 1; c < 10; c++) if (votes[c] > votes[arg]) arg = c;
        if (arg == labels[i]) correct++;
    }
    return (double)correct / (double)n;
}

typedef struct { int calls; int saw_loss; size_t cancel_at; } progress_state;

static inline int on_progress(void *user, uint32_t stage, size_t done, size_t total, double loss) {
    progress_state *s = user;
    s->calls++;
    if (stage == EMBER_STAGE_OPTIMIZE && !isnan(loss)) s->saw_loss = 1;
    (void)total;
    return (s->cancel_at && stage == EMBER_STAGE_OPTIMIZE && done == s->cancel_at) ? 1 : 0;
}

static inline int all_finite(const float *y, size_t len) {
    for (size_t i = 0; i < len; i++) if (!isfinite(y[i])) return 0;
    return 1;
}

/* Reads the first n MNIST digits (uncompressed IDX) as f32 rows and their labels. */
static inline int load_mnist(const char *images, const char *labels, size_t n, float **x, unsigned char **lab) {
    size_t ilen, llen;
    unsigned char *img = read_all(images, &ilen), *l = read_all(labels, &llen);
    if (!img || !l || ilen < 16 + 784 * n || llen < 8 + n) { free(img); free(l); return 0; }
    *x = malloc(n * 784 * sizeof(float));
    *lab = malloc(n);
    for (size_t i = 0; i < n * 784; i++) (*x)[i] = (float)img[16 + i];
    memcpy(*lab, l + 8, n);
    free(img);
    free(l);
    return 1;
}

#endif
