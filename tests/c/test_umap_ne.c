/* C test of ember_umap, ember_ne and ember_ne_spectrum through include/ember.h, on real
 * MNIST digits. Usage: test_umap_ne IMAGES LABELS (uncompressed IDX files). */
#include "common.h"

#define N 2000

static int same_bits(const float *a, const float *b, size_t len) {
    return memcmp(a, b, len * sizeof(float)) == 0;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s IMAGES LABELS\n", argv[0]); return 2; }
    float *x;
    unsigned char *lab;
    if (!load_mnist(argv[1], argv[2], N, &x, &lab)) { fprintf(stderr, "cannot read MNIST\n"); return 2; }
    float *y = malloc(N * 2 * sizeof(float)), *y2 = malloc(N * 2 * sizeof(float));
    float *xt = malloc((size_t)N * 784 * sizeof(float));
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < 784; j++) xt[j * N + i] = x[i * 784 + j];

    /* UMAP with its defaults on two threads. */
    ember_umap_params up = ember_umap_params_default();
    up.threads = 2;
    progress_state ps = {0, 0, 0};
    ember_status st = ember_umap(x, N, 784, 784, 1, &up, y, on_progress, &ps);
    CHECK(st == EMBER_OK, "ember_umap: %s", ember_last_error_message());
    CHECK(all_finite(y, N * 2), "UMAP output not finite");
    CHECK(ps.saw_loss, "progress never reported a loss");
    double acc = knn_accuracy(y, lab, N);
    printf("UMAP leave-one-out 10-NN accuracy on %d digits: %.4f\n", N, acc);
    CHECK(acc >= 0.78, "UMAP accuracy %.4f", acc);

    /* Column-major input and one thread give the same bits. */
    up.threads = 1;
    st = ember_umap(xt, N, 784, 1, N, &up, y2, NULL, NULL);
    CHECK(st == EMBER_OK && same_bits(y, y2, N * 2), "column-major / 1 thread changed UMAP");

    /* Cancellation mid-run keeps a finite embedding. */
    progress_state cancel = {0, 0, 10};
    st = ember_umap(x, N, 784, 784, 1, &up, y2, on_progress, &cancel);
    CHECK(st == EMBER_CANCELLED && all_finite(y2, N * 2), "UMAP cancel: status %d", st);

    /* The spectrum: three panels from one graph; the single-value call matches its panel. */
    ember_ne_params np = ember_ne_params_default();
    np.threads = 2;
    double s_values[3] = {0.0, 0.5, 1.0};
    float *panels = malloc(3 * N * 2 * sizeof(float));
    st = ember_ne_spectrum(x, N, 784, 784, 1, &np, s_values, 3, panels, NULL, NULL);
    CHECK(st == EMBER_OK, "ember_ne_spectrum: %s", ember_last_error_message());
    for (int p = 0; p < 3; p++) {
        double a = knn_accuracy(panels + p * N * 2, lab, N);
        printf("Neg-t-SNE s = %.1f: leave-one-out 10-NN accuracy %.4f\n", s_values[p], a);
        CHECK(a >= 0.78 && all_finite(panels + p * N * 2, N * 2), "panel %d accuracy %.4f", p, a);
    }
    np.s = 0.5;
    st = ember_ne(x, N, 784, 784, 1, &np, y, NULL, NULL);
    CHECK(st == EMBER_OK && same_bits(y, panels + N * 2, N * 2), "ember_ne differs from its spectrum panel");
    np.loss = EMBER_LOSS_INFONCE;
    st = ember_ne(xt, N, 784, 1, N, &np, y, NULL, NULL);
    CHECK(st == EMBER_OK && all_finite(y, N * 2), "InfoNC-t-SNE: %s", ember_last_error_message());

    /* A disconnected graph: spectral initialisation falls back to PCA and says so. */
    {
        size_t m = 200;
        float *two = malloc(2 * m * 784 * sizeof(float)), *yt = malloc(2 * m * 2 * sizeof(float));
        for (size_t i = 0; i < m * 784; i++) { two[i] = x[i]; two[m * 784 + i] = x[i] + 1e5f; }
        ember_umap_params small = ember_umap_params_default();
        small.epochs = 20;
        st = ember_umap(two, 2 * m, 784, 784, 1, &small, yt, NULL, NULL);
        CHECK(st == EMBER_OK && all_finite(yt, 2 * m * 2), "disconnected UMAP: %d", st);
        CHECK(strstr(ember_last_warning_message(), "connected components") != NULL,
              "no warning about the disconnected graph: '%s'", ember_last_warning_message());
        free(two);
        free(yt);
    }

    /* Bad input: clear status codes and messages that name the problem. */
    ember_umap_params bad = ember_umap_params_default();
    bad.neighbors = N + 1;
    CHECK(ember_umap(x, N, 784, 784, 1, &bad, y, NULL, NULL) == EMBER_ERR_INVALID_PARAMETER &&
              strstr(ember_last_error_message(), "neighbors"), "neighbors > N: %s", ember_last_error_message());
    bad = ember_umap_params_default();
    bad.min_dist = 2.0f;
    CHECK(ember_umap(x, N, 784, 784, 1, &bad, y, NULL, NULL) == EMBER_ERR_INVALID_PARAMETER &&
              strstr(ember_last_error_message(), "min_dist"), "min_dist > spread: %s", ember_last_error_message());
    bad = ember_umap_params_default();
    bad.negatives = N;
    CHECK(ember_umap(x, N, 784, 784, 1, &bad, y, NULL, NULL) == EMBER_ERR_INVALID_PARAMETER &&
              strstr(ember_last_error_message(), "negatives"), "negatives >= N: %s", ember_last_error_message());
    bad = ember_umap_params_default();
    bad.struct_size = 4;
    CHECK(ember_umap(x, N, 784, 784, 1, &bad, y, NULL, NULL) == EMBER_ERR_STRUCT_SIZE, "struct_size");
    CHECK(ember_umap(NULL, N, 784, 784, 1, NULL, y, NULL, NULL) == EMBER_ERR_NULL_POINTER, "NULL x");
    ember_ne_params badne = ember_ne_params_default();
    badne.loss = 99;
    CHECK(ember_ne(x, N, 784, 784, 1, &badne, y, NULL, NULL) == EMBER_ERR_INVALID_PARAMETER &&
              strstr(ember_last_error_message(), "loss"), "bad loss: %s", ember_last_error_message());
    badne = ember_ne_params_default();
    CHECK(ember_ne_spectrum(x, N, 784, 784, 1, &badne, s_values, 0, y, NULL, NULL) == EMBER_ERR_INVALID_PARAMETER,
          "count = 0");
    x[5] = NAN;
    CHECK(ember_ne(x, N, 784, 784, 1, NULL, y, NULL, NULL) == EMBER_ERR_NON_FINITE, "NaN input");

    printf("%d passed, %d failed\n", passes, failures);
    free(x); free(xt); free(lab); free(y); free(y2); free(panels);
    return failures ? 1 : 0;
}
