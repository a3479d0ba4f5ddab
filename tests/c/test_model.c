/* C test of fitted models through include/ember.h on real MNIST digits: fit t-SNE and UMAP
 * on the first TRAIN digits, place the next TEST, classify them by their nearest fitted
 * digits; save/load and bytes round trips; several threads transforming through one model
 * at once match one thread; bad files and double free. Usage: test_model IMAGES LABELS DIR */
#include "common.h"

#include <pthread.h>

#define TRAIN 3000
#define TEST 1000
#define THREADS 4

static float *x;
static const ember_model *shared;
static float reference_y[TEST * 2];

static void *transform_slice(void *arg) {
    int id = *(int *)arg;
    /* Each thread places every point, in its own batch size, with one worker thread. */
    size_t batch = (size_t)(id + 1) * 37;
    float *y = malloc(TEST * 2 * sizeof(float));
    ember_transform_params tp = ember_transform_params_default();
    tp.threads = 1;
    int ok = 1;
    for (size_t s = 0; s < TEST; s += batch) {
        size_t m = s + batch > TEST ? TEST - s : batch;
        if (ember_model_transform(shared, x + (TRAIN + s) * 784, m, 784, 1, &tp, y + s * 2, NULL, NULL) != EMBER_OK)
            ok = 0;
    }
    if (memcmp(y, reference_y, sizeof reference_y) != 0) ok = 0;
    free(y);
    *(int *)arg = ok;
    return NULL;
}

/* Classifies each placed point by majority of its 10 nearest fitted points. */
static double accuracy(const float *train, const float *test, const unsigned char *lab) {
    size_t correct = 0;
    for (size_t i = 0; i < TEST; i++) {
        double best_d[10];
        size_t best_j[10], m = 0;
        for (size_t j = 0; j < TRAIN; j++) {
            double dx = test[2 * i] - train[2 * j], dy = test[2 * i + 1] - train[2 * j + 1], d = dx * dx + dy * dy;
            if (m < 10 || d < best_d[m - 1]) {
                size_t p = m < 10 ? m++ : 9;
                while (p > 0 && best_d[p - 1] > d) { best_d[p] = best_d[p - 1]; best_j[p] = best_j[p - 1]; p--; }
                best_d[p] = d;
                best_j[p] = j;
            }
        }
        int votes[10] = {0}, arg = 0;
        for (size_t q = 0; q < m; q++) votes[lab[best_j[q]]]++;
        for (int c = 1; c < 10; c++) if (votes[c] > votes[arg]) arg = c;
        if (arg == lab[TRAIN + i]) correct++;
    }
    return (double)correct / TEST;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s IMAGES LABELS DIR\n", argv[0]); return 2; }
    unsigned char *lab;
    if (!load_mnist(argv[1], argv[2], TRAIN + TEST, &x, &lab)) { fprintf(stderr, "cannot read MNIST\n"); return 2; }
    char path[4096], bad_path[4096];
    snprintf(path, sizeof path, "%s/model.ember", argv[3]);
    snprintf(bad_path, sizeof bad_path, "%s/truncated.ember", argv[3]);
    float *train = malloc(TRAIN * 2 * sizeof(float)), *y = malloc(TEST * 2 * sizeof(float));

    for (uint32_t method = EMBER_METHOD_TSNE; method <= EMBER_METHOD_UMAP; method++) {
        const char *name = method == EMBER_METHOD_TSNE ? "t-SNE" : "UMAP";
        ember_model *model = (ember_model *)&model; /* garbage the call must overwrite */
        ember_tsne_params tp = ember_tsne_params_default();
        ember_umap_params up = ember_umap_params_default();
        tp.threads = up.threads = 2;
        const void *params = method == EMBER_METHOD_TSNE ? (const void *)&tp : (const void *)&up;
        ember_status st = ember_model_fit(x, TRAIN, 784, 784, 1, method, params, NULL, NULL, &model);
        CHECK(st == EMBER_OK && model != NULL, "%s fit: %s", name, ember_last_error_message());
        uint32_t m_kind = 0;
        size_t n = 0, d = 0, dims = 0;
        CHECK(ember_model_info(model, &m_kind, &n, &d, &dims) == EMBER_OK && m_kind == method && n == TRAIN &&
                  d == 784 && dims == 2,
              "%s info", name);
        CHECK(ember_model_embedding(model, train) == EMBER_OK && all_finite(train, TRAIN * 2), "%s embedding", name);

        st = ember_model_transform(model, x + TRAIN * 784, TEST, 784, 1, NULL, reference_y, NULL, NULL);
        CHECK(st == EMBER_OK, "%s transform: %s", name, ember_last_error_message());
        double acc = accuracy(train, reference_y, lab);
        printf("%s: 10-NN accuracy of %d placed digits among %d fitted: %.4f\n", name, TEST, TRAIN, acc);
        CHECK(acc >= 0.82, "%s transform accuracy %.4f", name, acc);

        /* Several threads through one model at once, each in its own batch sizes. */
        shared = model;
        pthread_t t[THREADS];
        int ids[THREADS];
        for (int i = 0; i < THREADS; i++) { ids[i] = i; pthread_create(&t[i], NULL, transform_slice, &ids[i]); }
        for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
        int all_ok = 1;
        for (int i = 0; i < THREADS; i++) all_ok &= ids[i];
        CHECK(all_ok, "%s: threads transforming at once differ from one thread", name);

        /* Saved, loaded, and through bytes: the same points. */
        CHECK(ember_model_save(model, path) == EMBER_OK, "%s save: %s", name, ember_last_error_message());
        ember_model *loaded = NULL, *from_bytes = NULL;
        CHECK(ember_model_load(path, &loaded) == EMBER_OK, "%s load: %s", name, ember_last_error_message());
        st = ember_model_transform(loaded, x + TRAIN * 784, TEST, 784, 1, NULL, y, NULL, NULL);
        CHECK(st == EMBER_OK && memcmp(y, reference_y, sizeof reference_y) == 0, "%s: loaded model differs", name);
        size_t len = 0;
        CHECK(ember_model_to_bytes(model, NULL, 0, &len) == EMBER_OK && len > TRAIN * 784 * 4, "%s size query", name);
        uint8_t *bytes = malloc(len);
        CHECK(ember_model_to_bytes(model, bytes, len - 1, &len) == EMBER_ERR_SHAPE, "%s: short buffer accepted", name);
        CHECK(ember_model_to_bytes(model, bytes, len, &len) == EMBER_OK, "%s to_bytes", name);
        CHECK(ember_model_from_bytes(bytes, len, &from_bytes) == EMBER_OK, "%s from_bytes: %s", name,
              ember_last_error_message());
        st = ember_model_transform(from_bytes, x + TRAIN * 784, TEST, 784, 1, NULL, y, NULL, NULL);
        CHECK(st == EMBER_OK && memcmp(y, reference_y, sizeof reference_y) == 0, "%s: model from bytes differs", name);

        /* Damaged models are refused by name and leave NULL. */
        ember_model *bad = (ember_model *)&bad;
        bytes[len / 2] ^= 0x40;
        CHECK(ember_model_from_bytes(bytes, len, &bad) == EMBER_ERR_BAD_MODEL && bad == NULL &&
                  strstr(ember_last_error_message(), "checksum") != NULL,
              "%s: flipped bit: %s", name, ember_last_error_message());
        bytes[len / 2] ^= 0x40;
        FILE *f = fopen(bad_path, "wb");
        fwrite(bytes, 1, len / 3, f);
        fclose(f);
        CHECK(ember_model_load(bad_path, &bad) == EMBER_ERR_BAD_MODEL && bad == NULL &&
                  strstr(ember_last_error_message(), "truncated") != NULL,
              "%s: truncated file: %s", name, ember_last_error_message());
        free(bytes);

        /* Wrong input: columns, NULLs, zero points, a struct of the other method. */
        CHECK(ember_model_transform(model, x, 0, 784, 1, NULL, y, NULL, NULL) == EMBER_ERR_SHAPE, "%s nq = 0", name);
        CHECK(ember_model_transform(NULL, x, 1, 784, 1, NULL, y, NULL, NULL) == EMBER_ERR_NULL_POINTER, "%s NULL model", name);
        float saved = x[TRAIN * 784 + 5];
        x[TRAIN * 784 + 5] = NAN;
        CHECK(ember_model_transform(model, x + TRAIN * 784, 2, 784, 1, NULL, y, NULL, NULL) == EMBER_ERR_NON_FINITE,
              "%s NaN in new points", name);
        x[TRAIN * 784 + 5] = saved;
        const void *other = method == EMBER_METHOD_TSNE ? (const void *)&up : (const void *)&tp;
        CHECK(ember_model_fit(x, 100, 784, 784, 1, method, other, NULL, NULL, &bad) == EMBER_ERR_STRUCT_SIZE && bad == NULL,
              "%s: the other method's struct was accepted", name);

        ember_model_free(&model);
        ember_model_free(&model); /* double free: harmless */
        ember_model_free(&loaded);
        ember_model_free(&from_bytes);
        ember_model_free(NULL);
        CHECK(model == NULL && loaded == NULL, "free must clear the handle");
    }
    ember_model *none = NULL;
    CHECK(ember_model_load("/nonexistent/dir/model.ember", &none) == EMBER_ERR_IO && none == NULL, "missing file");
    CHECK(ember_model_load(argv[1], &none) == EMBER_ERR_BAD_MODEL &&
              strstr(ember_last_error_message(), "EMBERMDL") != NULL,
          "an IDX file as a model: %s", ember_last_error_message());
    CHECK(ember_model_fit(x, 100, 784, 784, 1, 9, NULL, NULL, NULL, &none) == EMBER_ERR_INVALID_PARAMETER, "method 9");

    free(x); free(lab); free(train); free(y);
    printf("%d passed, %d failed\n", passes, failures);
    return failures ? 1 : 0;
}
