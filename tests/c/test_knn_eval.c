/* C test of ember_knn, ember_knn_query, ember_knn_recall and ember_knn_accuracy through
 * include/ember.h, on real MNIST digits. Usage: test_knn_eval IMAGES LABELS. */
#include "common.h"

#define N 3000
#define K 15
#define NB 2500 /* base rows for the query test; the rest are queries */

static double sq_dist(const float *a, const float *b, size_t d) {
    double s = 0;
    for (size_t j = 0; j < d; j++) { double t = (double)a[j] - b[j]; s += t * t; }
    return s;
}

/* The k-th smallest distance from row q to rows [lo, hi) other than q itself, by brute force. */
static double kth_distance(const float *x, size_t q, const float *qrow, size_t lo, size_t hi, size_t k) {
    double best[K + 1];
    size_t m = 0;
    for (size_t j = lo; j < hi; j++) {
        if (j == q) continue;
        double d = sqrt(sq_dist(qrow, x + j * 784, 784));
        if (m < k || d < best[m - 1]) {
            size_t p = m < k ? m++ : k - 1;
            while (p > 0 && best[p - 1] > d) { best[p] = best[p - 1]; p--; }
            best[p] = d;
        }
    }
    return best[k - 1];
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s IMAGES LABELS\n", argv[0]); return 2; }
    float *x;
    unsigned char *lab;
    if (!load_mnist(argv[1], argv[2], N, &x, &lab)) { fprintf(stderr, "cannot read MNIST\n"); return 2; }
    float *xt = malloc((size_t)N * 784 * sizeof(float));
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < 784; j++) xt[j * N + i] = x[i * 784 + j];
    uint32_t *exact = malloc(N * K * sizeof(uint32_t)), *approx = malloc(N * K * sizeof(uint32_t));
    uint32_t *colmajor = malloc(N * K * sizeof(uint32_t));
    float *dist = malloc(N * K * sizeof(float));

    /* Exact search: in range, never self, ascending, and the true k-th distance. */
    ember_status st = ember_knn(x, N, 784, 784, 1, K, EMBER_METRIC_EUCLIDEAN, EMBER_KNN_EXACT, 2, 42,
                                exact, dist, NULL, NULL);
    CHECK(st == EMBER_OK, "ember_knn exact: %s", ember_last_error_message());
    int lists_ok = 1;
    for (size_t i = 0; i < N; i++)
        for (size_t q = 0; q < K; q++) {
            uint32_t j = exact[i * K + q];
            if (j >= N || j == i || (q > 0 && dist[i * K + q] < dist[i * K + q - 1])) lists_ok = 0;
        }
    CHECK(lists_ok, "neighbour lists out of range, self, or not ascending");
    double worst = 0;
    for (size_t i = 0; i < 50; i++) {
        double truth = kth_distance(x, i, x + i * 784, 0, N, K);
        double got = dist[i * K + K - 1];
        double again = sqrt(sq_dist(x + i * 784, x + (size_t)exact[i * K + K - 1] * 784, 784));
        double e = fabs(got - truth) / truth + fabs(again - truth) / truth;
        if (e > worst) worst = e;
    }
    printf("exact k-th distances vs brute force: worst relative error %.2e\n", worst);
    CHECK(worst < 1e-3, "exact distances differ from brute force by %.2e", worst);

    /* Column-major input finds the same neighbours. */
    st = ember_knn(xt, N, 784, 1, N, K, EMBER_METRIC_EUCLIDEAN, EMBER_KNN_EXACT, 1, 42, colmajor, NULL, NULL, NULL);
    CHECK(st == EMBER_OK && memcmp(exact, colmajor, N * K * sizeof(uint32_t)) == 0,
          "column-major input changed the neighbours");

    /* Approximate search, judged by recall against exact; recall of exact with itself is 1. */
    st = ember_knn(x, N, 784, 784, 1, K, EMBER_METRIC_EUCLIDEAN, EMBER_KNN_APPROX, 2, 7, approx, NULL, NULL, NULL);
    CHECK(st == EMBER_OK, "ember_knn approx: %s", ember_last_error_message());
    double recall = 0, self_recall = 0;
    CHECK(ember_knn_recall(exact, approx, N, K, &recall) == EMBER_OK, "recall: %s", ember_last_error_message());
    CHECK(ember_knn_recall(exact, exact, N, K, &self_recall) == EMBER_OK && self_recall == 1.0,
          "recall of a list with itself is %.4f", self_recall);
    printf("approximate kNN recall@%d on %d digits: %.4f\n", K, N, recall);
    CHECK(recall >= 0.95, "approximate recall %.4f", recall);

    /* Cosine distances lie in [0, 2]. */
    st = ember_knn(x, N, 784, 784, 1, K, EMBER_METRIC_COSINE, EMBER_KNN_EXACT, 2, 42, approx, dist, NULL, NULL);
    int cos_ok = st == EMBER_OK;
    for (size_t i = 0; i < N * K; i++) if (!(dist[i] >= -1e-6f && dist[i] <= 2.0f)) cos_ok = 0;
    CHECK(cos_ok, "cosine kNN: status %d", st);

    /* Query: the last rows (column-major, their own strides) against the first NB rows. */
    size_t nq = N - NB;
    float *qt = malloc(nq * 784 * sizeof(float));
    for (size_t i = 0; i < nq; i++)
        for (size_t j = 0; j < 784; j++) qt[j * nq + i] = x[(NB + i) * 784 + j];
    uint32_t *qidx = malloc(nq * K * sizeof(uint32_t));
    float *qdist = malloc(nq * K * sizeof(float));
    st = ember_knn_query(x, NB, 784, 1, qt, nq, 1, nq, 784, K, EMBER_METRIC_EUCLIDEAN, 2, qidx, qdist);
    CHECK(st == EMBER_OK, "ember_knn_query: %s", ember_last_error_message());
    worst = 0;
    int q_ok = 1;
    for (size_t i = 0; i < nq; i++) {
        for (size_t q = 0; q < K; q++) if (qidx[i * K + q] >= NB) q_ok = 0;
        if (i < 50) {
            double truth = kth_distance(x, (size_t)-1, x + (NB + i) * 784, 0, NB, K);
            double e = fabs(qdist[i * K + K - 1] - truth) / truth;
            if (e > worst) worst = e;
        }
    }
    CHECK(q_ok && worst < 1e-3, "query neighbours: in range %d, worst relative error %.2e", q_ok, worst);

    /* Accuracy: raw pixels classify well, a label-free embedding near chance. */
    uint32_t *labels = malloc(N * sizeof(uint32_t));
    for (size_t i = 0; i < N; i++) labels[i] = lab[i];
    double acc = 0;
    st = ember_knn_accuracy(x, N, 784, labels, 10, 0.1, 42, 2, &acc);
    printf("10-NN accuracy of raw pixels on %d digits: %.4f\n", N, acc);
    CHECK(st == EMBER_OK && acc > 0.85, "raw-pixel accuracy %.4f (status %d)", acc, st);
    float *noise = malloc(N * 2 * sizeof(float));
    for (size_t i = 0; i < N * 2; i++) noise[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
    st = ember_knn_accuracy(noise, N, 2, labels, 10, 0.1, 42, 2, &acc);
    CHECK(st == EMBER_OK && acc < 0.25, "accuracy of a label-free embedding %.4f", acc);

    /* Bad input: clear statuses and messages, outputs untouched where the call refuses. */
    CHECK(ember_knn(NULL, N, 784, 784, 1, K, 0, 0, 1, 42, exact, NULL, NULL, NULL) == EMBER_ERR_NULL_POINTER,
          "NULL x");
    CHECK(ember_knn(x, N, 784, 784, 1, 0, 0, 0, 1, 42, exact, NULL, NULL, NULL) == EMBER_ERR_INVALID_PARAMETER,
          "k = 0");
    CHECK(ember_knn(x, 10, 784, 784, 1, 10, 0, 0, 1, 42, exact, NULL, NULL, NULL) == EMBER_ERR_INVALID_PARAMETER &&
              strstr(ember_last_error_message(), "k = 10") != NULL,
          "k = N: %s", ember_last_error_message());
    CHECK(ember_knn(x, N, 0, 784, 1, K, 0, 0, 1, 42, exact, NULL, NULL, NULL) == EMBER_ERR_SHAPE, "d = 0");
    CHECK(ember_knn(x, N, 784, 0, 0, K, 0, 0, 1, 42, exact, NULL, NULL, NULL) == EMBER_ERR_SHAPE, "zero strides");
    CHECK(ember_knn(x, N, 784, 784, 1, K, 9, 0, 1, 42, exact, NULL, NULL, NULL) == EMBER_ERR_INVALID_PARAMETER,
          "metric 9");
    float saved = x[5 * 784 + 3];
    x[5 * 784 + 3] = NAN;
    CHECK(ember_knn(x, N, 784, 784, 1, K, 0, 0, 1, 42, exact, NULL, NULL, NULL) == EMBER_ERR_NON_FINITE,
          "NaN in data");
    x[5 * 784 + 3] = saved;
    CHECK(ember_knn_query(x, NB, 784, 1, qt, nq, 1, nq, 784, NB + 1, 0, 1, qidx, NULL) == EMBER_ERR_INVALID_PARAMETER,
          "query k > base rows");
    CHECK(ember_knn_recall(exact, approx, 0, K, &recall) == EMBER_ERR_SHAPE, "recall n = 0");
    CHECK(ember_knn_recall(exact, NULL, N, K, &recall) == EMBER_ERR_NULL_POINTER, "recall NULL");
    CHECK(ember_knn_accuracy(x, N, 784, labels, 10, 1.5, 42, 1, &acc) == EMBER_ERR_INVALID_PARAMETER,
          "test fraction 1.5");

    free(x); free(xt); free(lab); free(exact); free(approx); free(colmajor); free(dist);
    free(qt); free(qidx); free(qdist); free(labels); free(noise);
    printf("%d passed, %d failed\n", passes, failures);
    return failures ? 1 : 0;
}
