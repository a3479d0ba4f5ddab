/* Many threads calling ember at once: every result equals the one-thread result bit for bit,
 * and each thread sees its own last-error message. Usage: test_threads IMAGES LABELS */
#include "common.h"

#include <pthread.h>

#define N 400
#define THREADS 8

static float *x;
static float reference_tsne[N * 2], reference_grad[64 * 16];
static double reference_loss;

typedef struct {
    int id;
    int ok;
    char message[256];
} job;

static void *work(void *arg) {
    job *j = arg;
    float y[N * 2], g[64 * 16];
    double loss;
    ember_tsne_params p = ember_tsne_params_default();
    p.perplexity = 20.0f;
    p.threads = 1;
    j->ok = 1;
    if (j->id % 2 == 0) {
        /* Even threads also provoke an error first: their message must not leak to others. */
        ember_tsne_params bad = p;
        bad.perplexity = 1e6f;
        if (ember_tsne(x, N, 784, 784, 1, &bad, y, NULL, NULL) != EMBER_ERR_PERPLEXITY_TOO_LARGE) j->ok = 0;
        snprintf(j->message, sizeof j->message, "%s", ember_last_error_message());
    }
    if (ember_tsne(x, N, 784, 784, 1, &p, y, NULL, NULL) != EMBER_OK) j->ok = 0;
    if (memcmp(y, reference_tsne, sizeof y) != 0) j->ok = 0;
    if (ember_last_error_message()[0] != '\0') j->ok = 0; /* cleared by the successful call */
    ember_similarity s = {EMBER_SIM_COSINE, 0.2f};
    if (ember_infonce(x, 64, 16, 784, s, 1, &loss, g) != EMBER_OK) j->ok = 0;
    if (loss != reference_loss || memcmp(g, reference_grad, sizeof g) != 0) j->ok = 0;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s IMAGES LABELS\n", argv[0]); return 2; }
    unsigned char *lab;
    if (!load_mnist(argv[1], argv[2], N, &x, &lab)) { fprintf(stderr, "cannot read MNIST\n"); return 2; }
    ember_tsne_params p = ember_tsne_params_default();
    p.perplexity = 20.0f;
    p.threads = 1;
    ember_similarity s = {EMBER_SIM_COSINE, 0.2f};
    /* 64 vectors of 16 values: the first 16 pixels' columns of each row, by row stride. */
    for (size_t i = 0; i < 64; i++) x[i * 784] += 1.0f; /* no zero vectors */
    CHECK(ember_infonce(x, 64, 16, 784, s, 1, &reference_loss, reference_grad) == EMBER_OK, "reference InfoNCE");
    CHECK(ember_tsne(x, N, 784, 784, 1, &p, reference_tsne, NULL, NULL) == EMBER_OK, "reference t-SNE");

    pthread_t th[THREADS];
    job jobs[THREADS];
    for (int t = 0; t < THREADS; t++) {
        jobs[t].id = t;
        jobs[t].message[0] = '\0';
        pthread_create(&th[t], NULL, work, &jobs[t]);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        CHECK(jobs[t].ok, "thread %d: results differ from one thread, or its error state leaked", t);
        if (t % 2 == 0) CHECK(strstr(jobs[t].message, "perplexity") != NULL, "thread %d message '%s'", t, jobs[t].message);
    }
    printf("%d threads at once: results identical to one thread\n", THREADS);
    printf("%d passed, %d failed\n", passes, failures);
    free(x);
    free(lab);
    return failures ? 1 : 0;
}
