/* The C half of ROBUSTNESS.md's bad-input table: each row a bad input to the C API, which must
 * return the named status (never EMBER_ERR_INTERNAL), leave outputs untouched where it says
 * so, and explain itself in ember_last_error_message(). Prints one table row per case.
 * Usage: test_bad_input DIR (a scratch directory for model files). */
#include "common.h"

#define N 60
#define D 4

static float x[N * D], y[N * 2];
static const char *scratch_dir = "";

/* The message with the scratch directory shown as DIR, so the table is the same anywhere. */
static const char *message(void) {
    static char out[1024];
    const char *m = ember_last_error_message();
    const char *at = scratch_dir[0] ? strstr(m, scratch_dir) : NULL;
    if (!at) return m;
    snprintf(out, sizeof out, "%.*sDIR%s", (int)(at - m), m, at + strlen(scratch_dir));
    return out;
}

static void fill(float scale) {
    for (int i = 0; i < N * D; i++) x[i] = scale * (((i * 37) % 101) / 50.0f + (i % 4 == (i / 4) % 3 ? 8.0f : 0.0f));
}

static const char *name_of(ember_status s) {
    switch (s) {
    case EMBER_OK: return "EMBER_OK";
    case EMBER_ERR_NULL_POINTER: return "EMBER_ERR_NULL_POINTER";
    case EMBER_ERR_NON_FINITE: return "EMBER_ERR_NON_FINITE";
    case EMBER_ERR_SHAPE: return "EMBER_ERR_SHAPE";
    case EMBER_ERR_INVALID_PARAMETER: return "EMBER_ERR_INVALID_PARAMETER";
    case EMBER_ERR_PERPLEXITY_TOO_LARGE: return "EMBER_ERR_PERPLEXITY_TOO_LARGE";
    case EMBER_ERR_TOO_FEW_POINTS: return "EMBER_ERR_TOO_FEW_POINTS";
    case EMBER_ERR_STRUCT_SIZE: return "EMBER_ERR_STRUCT_SIZE";
    case EMBER_ERR_BAD_MODEL: return "EMBER_ERR_BAD_MODEL";
    case EMBER_ERR_IO: return "EMBER_ERR_IO";
    case EMBER_ERR_SCALE: return "EMBER_ERR_SCALE";
    default: return "other";
    }
}

/* Checks the status, that y is untouched (all 12345), and prints the row. */
static void row(const char *what, const char *call, ember_status got, ember_status want) {
    int untouched = 1;
    for (int i = 0; i < N * 2; i++) untouched &= y[i] == 12345.0f;
    CHECK(got == want, "%s: got %s, want %s (%s)", what, name_of(got), name_of(want), ember_last_error_message());
    CHECK(got == EMBER_OK || untouched, "%s: the output was written", what);
    CHECK(got == EMBER_OK || ember_last_error_message()[0] != '\0', "%s: no message", what);
    printf("| %s | `%s` | %s: %s |\n", what, call, name_of(got), got == EMBER_OK ? "(accepted)" : message());
    for (int i = 0; i < N * 2; i++) y[i] = 12345.0f;
}

static void write_file(const char *path, const void *bytes, size_t len) {
    FILE *f = fopen(path, "wb");
    if (f) { fwrite(bytes, 1, len, f); fclose(f); }
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s DIR\n", argv[0]); return 2; }
    scratch_dir = argv[1];
    for (int i = 0; i < N * 2; i++) y[i] = 12345.0f;
    ember_tsne_params p = ember_tsne_params_default();
    p.perplexity = 5;
    p.iters = 50;
    p.early_iters = 50;
    ember_status st;

    fill(1); x[9] = NAN;
    row("NaN in the data", "ember_tsne", ember_tsne(x, N, D, D, 1, &p, y, NULL, NULL), EMBER_ERR_NON_FINITE);
    fill(1); x[17] = INFINITY;
    row("+Inf in the data", "ember_tsne", ember_tsne(x, N, D, D, 1, &p, y, NULL, NULL), EMBER_ERR_NON_FINITE);
    fill(1); x[17] = -INFINITY;
    row("-Inf in the data", "ember_umap", ember_umap(x, N, D, D, 1, NULL, y, NULL, NULL), EMBER_ERR_NON_FINITE);
    fill(1);
    row("N = 0", "ember_tsne", ember_tsne(x, 0, D, D, 1, &p, y, NULL, NULL), EMBER_ERR_TOO_FEW_POINTS);
    row("N = 1", "ember_umap", ember_umap(x, 1, D, D, 1, NULL, y, NULL, NULL), EMBER_ERR_TOO_FEW_POINTS);
    row("N = 2 (perplexity 5)", "ember_tsne", ember_tsne(x, 2, D, D, 1, &p, y, NULL, NULL), EMBER_ERR_PERPLEXITY_TOO_LARGE);
    row("D = 0", "ember_tsne", ember_tsne(x, N, 0, D, 1, &p, y, NULL, NULL), EMBER_ERR_SHAPE);
    ember_tsne_params big = p;
    big.perplexity = N;
    row("perplexity >= N", "ember_tsne", ember_tsne(x, N, D, D, 1, &big, y, NULL, NULL), EMBER_ERR_PERPLEXITY_TOO_LARGE);
    ember_umap_params up = ember_umap_params_default();
    up.neighbors = N + 1;
    row("k >= N (UMAP neighbours)", "ember_umap", ember_umap(x, N, D, D, 1, &up, y, NULL, NULL), EMBER_ERR_INVALID_PARAMETER);
    uint32_t idx[N * 2];
    row("k >= N (kNN)", "ember_knn", ember_knn(x, N, D, D, 1, N, 0, 0, 1, 1, idx, NULL, NULL, NULL), EMBER_ERR_INVALID_PARAMETER);
    fill(1e30f);
    row("magnitudes of 1e30", "ember_tsne", ember_tsne(x, N, D, D, 1, &p, y, NULL, NULL), EMBER_ERR_SCALE);
    fill(1e-30f);
    row("magnitudes of 1e-30", "ember_umap", ember_umap(x, N, D, D, 1, NULL, y, NULL, NULL), EMBER_ERR_SCALE);
    fill(1);
    row("NULL data", "ember_tsne", ember_tsne(NULL, N, D, D, 1, &p, y, NULL, NULL), EMBER_ERR_NULL_POINTER);
    row("zero strides", "ember_tsne", ember_tsne(x, N, D, 0, 0, &p, y, NULL, NULL), EMBER_ERR_SHAPE);
    row("overflowing strides", "ember_tsne", ember_tsne(x, N, D, SIZE_MAX / 2, 1, &p, y, NULL, NULL), EMBER_ERR_SHAPE);
    ember_tsne_params wrong = p;
    wrong.struct_size = 4;
    row("wrong struct_size", "ember_tsne", ember_tsne(x, N, D, D, 1, &wrong, y, NULL, NULL), EMBER_ERR_STRUCT_SIZE);
    ember_tsne_params bad_dims = p;
    bad_dims.dims = 0;
    row("impossible parameter (dims 0)", "ember_tsne", ember_tsne(x, N, D, D, 1, &bad_dims, y, NULL, NULL), EMBER_ERR_INVALID_PARAMETER);

    /* Degenerate but valid: embedded, finite. */
    for (int i = 0; i < N * D; i++) x[i] = 3.0f;
    st = ember_tsne(x, N, D, D, 1, &p, y, NULL, NULL);
    CHECK(st == EMBER_OK && all_finite(y, N * 2), "identical points: %s", ember_last_error_message());
    for (int i = 0; i < N * 2; i++) y[i] = 12345.0f;
    row("all points identical", "ember_tsne", st, EMBER_OK);
    fill(1);
    for (int i = 0; i < N; i++) x[i * D + 1] = 7.0f;
    st = ember_umap(x, N, D, D, 1, NULL, y, NULL, NULL);
    CHECK(st == EMBER_OK && all_finite(y, N * 2), "constant column: %s", ember_last_error_message());
    for (int i = 0; i < N * 2; i++) y[i] = 12345.0f;
    row("a constant column", "ember_umap", st, EMBER_OK);

    /* Model files. */
    fill(1);
    ember_model *m = NULL, *got = NULL;
    CHECK(ember_model_fit(x, N, D, D, 1, EMBER_METHOD_UMAP, NULL, NULL, NULL, &m) == EMBER_OK, "fit");
    size_t len = 0;
    ember_model_to_bytes(m, NULL, 0, &len);
    uint8_t *bytes = malloc(len);
    ember_model_to_bytes(m, bytes, len, &len);
    char path[4096];
    snprintf(path, sizeof path, "%s/truncated.ember", argv[1]);
    write_file(path, bytes, len - 7);
    row("truncated model file", "ember_model_load", ember_model_load(path, &got), EMBER_ERR_BAD_MODEL);
    snprintf(path, sizeof path, "%s/empty.ember", argv[1]);
    write_file(path, bytes, 0);
    row("empty model file", "ember_model_load", ember_model_load(path, &got), EMBER_ERR_BAD_MODEL);
    row("a directory as model", "ember_model_load", ember_model_load(argv[1], &got), EMBER_ERR_IO);
    uint8_t *lie = malloc(len);
    memcpy(lie, bytes, len);
    uint64_t huge = (uint64_t)1 << 40;
    memcpy(lie + 24, &huge, 8); /* n = 2^40 points: refused by length, nothing allocated */
    row("model header of 2^40 points", "ember_model_from_bytes", ember_model_from_bytes(lie, len, &got), EMBER_ERR_BAD_MODEL);
    snprintf(path, sizeof path, "%s/no/such/dir/m.ember", argv[1]);
    row("unwritable model path", "ember_model_save", ember_model_save(m, path), EMBER_ERR_IO);
    CHECK(got == NULL, "a failed load left a handle");
    free(lie);
    free(bytes);
    ember_model_free(&m);

    printf("%d passed, %d failed\n", passes, failures);
    return failures ? 1 : 0;
}
