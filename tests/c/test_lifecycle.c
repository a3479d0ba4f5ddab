/* Small, fast C test of every entry point's edges, built twice: under ASan + UBSan and
 * plain for valgrind. Handles (new, query, free, double free, free(NULL)), NULL arguments,
 * zero sizes, wrong strides, wrong struct sizes and cancellation, plus one short real run
 * of each method on MNIST digits. Usage: test_lifecycle IMAGES LABELS. */
#include "common.h"

#define N 300

static int cancel_at_first_step(void *user, uint32_t stage, size_t done, size_t total, double loss) {
    (void)user; (void)total; (void)loss;
    return stage == EMBER_STAGE_OPTIMIZE && done >= 1;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s IMAGES LABELS\n", argv[0]); return 2; }
    float *x;
    unsigned char *lab;
    if (!load_mnist(argv[1], argv[2], N, &x, &lab)) { fprintf(stderr, "cannot read MNIST\n"); return 2; }
    float *xt = malloc((size_t)N * 784 * sizeof(float));
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < 784; j++) xt[j * N + i] = x[i * 784 + j];
    float *y = malloc(3 * N * 2 * sizeof(float));
    uint32_t *idx = malloc(N * 10 * sizeof(uint32_t)), *idx2 = malloc(N * 10 * sizeof(uint32_t));
    float *dist = malloc(N * 10 * sizeof(float)), *dist2 = malloc(N * 10 * sizeof(float));

    /* kNN index handle: made from column-major data, queried, freed twice. */
    ember_knn_index *index = (ember_knn_index *)&index; /* garbage the call must overwrite */
    CHECK(ember_knn_index_new(x, 0, 784, 784, 1, EMBER_METRIC_EUCLIDEAN, &index) == EMBER_ERR_SHAPE && index == NULL,
          "index of zero rows must fail and leave NULL");
    CHECK(ember_knn_index_new(xt, 200, 784, 1, N, EMBER_METRIC_EUCLIDEAN, &index) == EMBER_OK && index != NULL,
          "ember_knn_index_new: %s", ember_last_error_message());
    size_t in = 0, id = 0;
    CHECK(ember_knn_index_shape(index, &in, &id) == EMBER_OK && in == 200 && id == 784, "index shape");
    ember_status st = ember_knn_index_query(index, x + 200 * 784, 100, 784, 1, 10, 1, idx, dist);
    CHECK(st == EMBER_OK, "ember_knn_index_query: %s", ember_last_error_message());
    st = ember_knn_query(x, 200, 784, 1, x + 200 * 784, 100, 784, 1, 784, 10, EMBER_METRIC_EUCLIDEAN, 1, idx2, dist2);
    CHECK(st == EMBER_OK && memcmp(idx, idx2, 100 * 10 * sizeof(uint32_t)) == 0 &&
              memcmp(dist, dist2, 100 * 10 * sizeof(float)) == 0,
          "index query differs from ember_knn_query");
    CHECK(ember_knn_index_query(index, x, 100, 784, 1, 201, 1, idx, NULL) == EMBER_ERR_INVALID_PARAMETER,
          "k above the index size");
    CHECK(ember_knn_index_query(index, NULL, 100, 784, 1, 10, 1, idx, NULL) == EMBER_ERR_NULL_POINTER, "NULL queries");
    CHECK(ember_knn_index_query(NULL, x, 100, 784, 1, 10, 1, idx, NULL) == EMBER_ERR_NULL_POINTER, "NULL index");
    CHECK(ember_knn_index_query(index, x, 0, 784, 1, 10, 1, idx, NULL) == EMBER_ERR_SHAPE, "zero queries");
    ember_knn_index_free(&index);
    CHECK(index == NULL, "free must clear the handle");
    ember_knn_index_free(&index); /* double free: harmless */
    ember_knn_index_free(NULL);
    CHECK(ember_knn_index_query(index, x, 100, 784, 1, 10, 1, idx, NULL) == EMBER_ERR_NULL_POINTER,
          "query after free");

    /* Zero sizes and wrong strides on every method: a status, never a crash. */
    ember_tsne_params tp = ember_tsne_params_default();
    ember_umap_params up = ember_umap_params_default();
    ember_ne_params np = ember_ne_params_default();
    CHECK(ember_tsne(x, 0, 784, 784, 1, &tp, y, NULL, NULL) == EMBER_ERR_TOO_FEW_POINTS, "tsne n = 0");
    CHECK(ember_tsne(x, N, 0, 784, 1, &tp, y, NULL, NULL) == EMBER_ERR_SHAPE, "tsne d = 0");
    CHECK(ember_tsne(x, N, 784, 0, 1, &tp, y, NULL, NULL) == EMBER_ERR_SHAPE, "tsne row stride 0");
    CHECK(ember_tsne(x, N, 784, SIZE_MAX / 2, 1, &tp, y, NULL, NULL) == EMBER_ERR_SHAPE, "tsne overflowing stride");
    CHECK(ember_umap(x, 1, 784, 784, 1, &up, y, NULL, NULL) == EMBER_ERR_TOO_FEW_POINTS, "umap n = 1");
    CHECK(ember_ne(x, N, 784, 784, 0, &np, y, NULL, NULL) == EMBER_ERR_SHAPE, "ne col stride 0");
    double s_values[2] = {0.0, 1.0};
    CHECK(ember_ne_spectrum(x, N, 784, 784, 1, &np, s_values, 0, y, NULL, NULL) == EMBER_ERR_INVALID_PARAMETER,
          "spectrum count 0");
    CHECK(ember_knn(x, N, 784, 784, 1, 10, 0, 0, 1, 1, NULL, NULL, NULL, NULL) == EMBER_ERR_NULL_POINTER, "knn NULL idx");
    double loss = 0;
    float grad[8];
    ember_similarity cosine = {EMBER_SIM_COSINE, 0.5f};
    CHECK(ember_infonce(x, 0, 784, 784, cosine, 1, &loss, grad) == EMBER_ERR_SHAPE, "infonce rows = 0");
    CHECK(ember_infonce(NULL, 2, 4, 4, cosine, 1, &loss, grad) == EMBER_ERR_NULL_POINTER, "infonce NULL z");

    /* Wrong struct sizes are refused by name. */
    tp.struct_size = 8;
    CHECK(ember_tsne(x, N, 784, 784, 1, &tp, y, NULL, NULL) == EMBER_ERR_STRUCT_SIZE, "tsne struct_size");
    up.struct_size += 4;
    CHECK(ember_umap(x, N, 784, 784, 1, &up, y, NULL, NULL) == EMBER_ERR_STRUCT_SIZE &&
              strstr(ember_last_error_message(), "ember_umap_params_default") != NULL,
          "umap struct_size: %s", ember_last_error_message());
    tp = ember_tsne_params_default();
    up = ember_umap_params_default();

    /* One short real run of each method, and cancellation at the first step. */
    tp.early_iters = 50;
    tp.iters = 100;
    tp.threads = 2;
    tp.perplexity = 20;
    CHECK(ember_tsne(xt, N, 784, 1, N, &tp, y, NULL, NULL) == EMBER_OK && all_finite(y, N * 2),
          "tsne: %s", ember_last_error_message());
    CHECK(ember_tsne(x, N, 784, 784, 1, &tp, y, cancel_at_first_step, NULL) == EMBER_CANCELLED && all_finite(y, N * 2),
          "tsne cancellation");
    up.epochs = 50;
    CHECK(ember_umap(x, N, 784, 784, 1, &up, y, NULL, NULL) == EMBER_OK && all_finite(y, N * 2),
          "umap: %s", ember_last_error_message());
    CHECK(ember_umap(x, N, 784, 784, 1, &up, y, cancel_at_first_step, NULL) == EMBER_CANCELLED, "umap cancellation");
    np.epochs = 50;
    CHECK(ember_ne_spectrum(x, N, 784, 784, 1, &np, s_values, 2, y, NULL, NULL) == EMBER_OK &&
              all_finite(y, 2 * N * 2),
          "spectrum: %s", ember_last_error_message());
    CHECK(ember_knn(x, N, 784, 784, 1, 10, EMBER_METRIC_COSINE, EMBER_KNN_APPROX, 2, 5, idx, dist, NULL, NULL) == EMBER_OK,
          "approximate knn: %s", ember_last_error_message());
    float *g = malloc(64 * 784 * sizeof(float));
    CHECK(ember_infonce(x, 64, 784, 784, cosine, 2, &loss, g) == EMBER_OK && isfinite(loss) && all_finite(g, 64 * 784),
          "infonce: %s", ember_last_error_message());
    ember_release_scratch();
    ember_release_scratch();

    free(g); free(x); free(xt); free(lab); free(y); free(idx); free(idx2); free(dist); free(dist2);
    printf("%d passed, %d failed\n", passes, failures);
    return failures ? 1 : 0;
}
