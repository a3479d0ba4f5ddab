/* C test of the contrastive kernels through include/ember.h: each function against the
 * float64 reference fixtures in tests/fixtures/contrastive. Usage: test_contrastive DIR */
#include "common.h"

#define MAX_ARRAYS 8

typedef struct {
    char name[32];
    size_t rows, cols;
    double *v;
} array;

typedef struct {
    array a[MAX_ARRAYS];
    int count;
} fixture;

static int load_fixture(const char *dir, const char *name, fixture *f) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.txt", dir, name);
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    f->count = 0;
    char tok[64];
    while (fscanf(fp, "%63s", tok) == 1) {
        if (tok[0] == '#') { int c; while ((c = fgetc(fp)) != '\n' && c != EOF) {} continue; }
        if (strcmp(tok, "param") == 0) { char k[64], v[64]; if (fscanf(fp, "%63s %63s", k, v) != 2) break; continue; }
        if (strcmp(tok, "array") != 0 || f->count == MAX_ARRAYS) break;
        array *a = &f->a[f->count++];
        if (fscanf(fp, "%31s %zu %zu", a->name, &a->rows, &a->cols) != 3) break;
        a->v = malloc(a->rows * a->cols * sizeof(double));
        for (size_t i = 0; i < a->rows * a->cols; i++)
            if (fscanf(fp, "%lf", &a->v[i]) != 1) { fclose(fp); return 0; }
    }
    fclose(fp);
    return 1;
}

static array *get(fixture *f, const char *name) {
    for (int i = 0; i < f->count; i++) if (strcmp(f->a[i].name, name) == 0) return &f->a[i];
    fprintf(stderr, "fixture array %s missing\n", name);
    exit(2);
}

static float *as_f32(const array *a) {
    float *o = malloc(a->rows * a->cols * sizeof(float));
    for (size_t i = 0; i < a->rows * a->cols; i++) o[i] = (float)a->v[i];
    return o;
}

static void free_fixture(fixture *f) {
    for (int i = 0; i < f->count; i++) free(f->a[i].v);
}

/* Loss within 1e-5 relative; every gradient row within 1e-4 relative (norm). */
static void compare(const char *name, double loss, fixture *f, const float *g, const char *key) {
    double want = get(f, "loss")->v[0];
    CHECK(fabs(loss - want) <= 1e-5 * fabs(want), "%s: loss %.9g, reference %.9g", name, loss, want);
    array *r = get(f, key);
    double worst = 0;
    for (size_t i = 0; i < r->rows; i++) {
        double d = 0, n = 0;
        for (size_t c = 0; c < r->cols; c++) {
            double w = r->v[i * r->cols + c], e = g[i * r->cols + c] - w;
            d += e * e;
            n += w * w;
        }
        double rel = sqrt(d / (n > 1e-300 ? n : 1e-300));
        if (rel > worst) worst = rel;
    }
    printf("%s: loss %.9g (reference %.9g), %s worst row relative error %.1e\n", name, loss, want, key, worst);
    CHECK(worst <= 1e-4, "%s: %s relative error %g", name, key, worst);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]); return 2; }
    const char *dir = argv[1];
    fixture f;
    double loss;

    const char *infonce[3] = {"infonce_cosine", "infonce_cosine_cold_wide_norms", "infonce_cauchy"};
    ember_similarity sims[3] = {{EMBER_SIM_COSINE, 0.1f}, {EMBER_SIM_COSINE, 0.01f}, {EMBER_SIM_STUDENT_T, 1.0f}};
    for (int c = 0; c < 3; c++) {
        if (!load_fixture(dir, infonce[c], &f)) { fprintf(stderr, "cannot read %s\n", infonce[c]); return 2; }
        array *z = get(&f, "z");
        float *zf = as_f32(z), *g = malloc(z->rows * z->cols * sizeof(float));
        ember_status st = ember_infonce(zf, z->rows, z->cols, z->cols, sims[c], 2, &loss, g);
        CHECK(st == EMBER_OK, "%s: %s", infonce[c], ember_last_error_message());
        compare(infonce[c], loss, &f, g, "grad");
        free(zf); free(g); free_fixture(&f);
    }

    if (!load_fixture(dir, "clip", &f)) return 2;
    {
        array *a = get(&f, "a"), *b = get(&f, "b");
        float *af = as_f32(a), *bf = as_f32(b);
        float *ga = malloc(a->rows * a->cols * sizeof(float)), *gb = malloc(b->rows * b->cols * sizeof(float));
        ember_similarity s = {EMBER_SIM_COSINE, 0.07f};
        ember_status st = ember_clip_loss(af, bf, a->rows, a->cols, a->cols, b->cols, s, 1, &loss, ga, gb);
        CHECK(st == EMBER_OK, "clip: %s", ember_last_error_message());
        compare("clip (a)", loss, &f, ga, "grad_a");
        compare("clip (b)", loss, &f, gb, "grad_b");
        free(af); free(bf); free(ga); free(gb); free_fixture(&f);
    }

    if (!load_fixture(dir, "supcon", &f)) return 2;
    {
        array *z = get(&f, "z"), *l = get(&f, "labels");
        float *zf = as_f32(z), *g = malloc(z->rows * z->cols * sizeof(float));
        uint32_t *labels = malloc(z->rows * sizeof(uint32_t));
        for (size_t i = 0; i < z->rows; i++) labels[i] = (uint32_t)l->v[i];
        ember_similarity s = {EMBER_SIM_COSINE, 0.1f};
        ember_status st = ember_supcon(zf, labels, z->rows, z->cols, z->cols, s, 2, &loss, g);
        CHECK(st == EMBER_OK, "supcon: %s", ember_last_error_message());
        compare("supcon", loss, &f, g, "grad");
        free(zf); free(g); free(labels); free_fixture(&f);
    }

    /* I-Con with p as CSR, built from the fixture's dense p. */
    const char *icon[2] = {"icon_perplexity_studentt", "icon_knn_gaussian_joint"};
    for (int c = 0; c < 2; c++) {
        if (!load_fixture(dir, icon[c], &f)) return 2;
        array *z = get(&f, "z"), *p = get(&f, "p");
        size_t m = z->rows, nnz = 0;
        size_t *indptr = malloc((m + 1) * sizeof(size_t));
        uint32_t *idx = malloc(m * m * sizeof(uint32_t));
        float *val = malloc(m * m * sizeof(float));
        indptr[0] = 0;
        for (size_t i = 0; i < m; i++) {
            for (size_t j = 0; j < m; j++)
                if (p->v[i * m + j] != 0) { idx[nnz] = (uint32_t)j; val[nnz++] = (float)p->v[i * m + j]; }
            indptr[i + 1] = nnz;
        }
        ember_icon_params ip = ember_icon_params_default();
        if (c == 0) { ip.q.kind = EMBER_SIM_STUDENT_T; ip.q.param = 1.0f; ip.debias = 0.1f; }
        else { ip.q.kind = EMBER_SIM_GAUSSIAN; ip.q.param = 0.5f; ip.joint = 1; }
        float *zf = as_f32(z), *g = malloc(m * z->cols * sizeof(float));
        ember_status st = ember_icon_loss(zf, m, z->cols, z->cols, &ip, indptr, idx, val, NULL, &loss, g);
        CHECK(st == EMBER_OK, "%s: %s", icon[c], ember_last_error_message());
        compare(icon[c], loss, &f, g, "grad");
        if (c == 1) {
            /* The same p from the data by ember's own kNN builder. */
            array *x = get(&f, "x");
            float *xf = as_f32(x);
            size_t bound = ember_icon_neighbourhood_bound(m, EMBER_NEIGHBOURHOOD_KNN, 3.0f), built = 0;
            size_t *bp = malloc((m + 1) * sizeof(size_t));
            uint32_t *bi = malloc(bound * sizeof(uint32_t));
            float *bv = malloc(bound * sizeof(float));
            st = ember_icon_neighbourhood(xf, m, x->cols, x->cols, EMBER_NEIGHBOURHOOD_KNN, 3.0f, 1, 1, bp, bi, bv, &built);
            CHECK(st == EMBER_OK, "neighbourhood: %s", ember_last_error_message());
            st = ember_icon_loss(zf, m, z->cols, z->cols, &ip, bp, bi, bv, NULL, &loss, g);
            CHECK(st == EMBER_OK, "icon with built p: %s", ember_last_error_message());
            compare("icon with p from ember_icon_neighbourhood", loss, &f, g, "grad");
            free(xf); free(bp); free(bi); free(bv);
        }
        free(zf); free(g); free(indptr); free(idx); free(val); free_fixture(&f);
    }

    if (!load_fixture(dir, "icon_pairs_cosine_debiased", &f)) return 2;
    {
        array *z = get(&f, "z");
        float *zf = as_f32(z), *g = malloc(z->rows * z->cols * sizeof(float));
        ember_icon_params ip = ember_icon_params_default();
        ip.p_kind = EMBER_P_PAIRS;
        ip.q.kind = EMBER_SIM_COSINE;
        ip.q.param = 0.5f;
        ip.debias = 0.2f;
        ember_status st = ember_icon_loss(zf, z->rows, z->cols, z->cols, &ip, NULL, NULL, NULL, NULL, &loss, g);
        CHECK(st == EMBER_OK, "icon pairs: %s", ember_last_error_message());
        compare("icon_pairs_cosine_debiased", loss, &f, g, "grad");

        /* Errors: a zero vector, a bad temperature, NULLs, an odd batch. */
        ember_similarity cold = {EMBER_SIM_COSINE, 0.1f}, bad = {EMBER_SIM_COSINE, 0.0f};
        for (size_t c = 0; c < z->cols; c++) zf[3 * z->cols + c] = 0.0f;
        st = ember_infonce(zf, z->rows, z->cols, z->cols, cold, 1, &loss, g);
        CHECK(st == EMBER_ERR_ZERO_VECTOR && strstr(ember_last_error_message(), "row 3"),
              "zero vector: %d %s", st, ember_last_error_message());
        zf[3 * z->cols] = 1.0f;
        st = ember_infonce(zf, z->rows, z->cols, z->cols, bad, 1, &loss, g);
        CHECK(st == EMBER_ERR_INVALID_PARAMETER && strstr(ember_last_error_message(), "tau"), "tau = 0");
        CHECK(ember_infonce(NULL, z->rows, z->cols, z->cols, cold, 1, &loss, g) == EMBER_ERR_NULL_POINTER, "NULL z");
        CHECK(ember_infonce(zf, z->rows, z->cols, z->cols, cold, 1, NULL, g) == EMBER_ERR_NULL_POINTER, "NULL loss");
        CHECK(ember_infonce(zf, z->rows - 1, z->cols, z->cols, cold, 1, &loss, g) == EMBER_ERR_INVALID_PARAMETER,
              "odd batch");
        CHECK(ember_infonce(zf, z->rows, z->cols, z->cols - 1, cold, 1, &loss, g) == EMBER_ERR_SHAPE, "stride < d");
        free(zf); free(g); free_fixture(&f);
    }
    /* The kept scratch can be released, and the next call allocates afresh. */
    ember_release_scratch();
    if (!load_fixture(dir, "infonce_cosine", &f)) return 2;
    {
        array *z = get(&f, "z");
        float *zf = as_f32(z), *g = malloc(z->rows * z->cols * sizeof(float));
        ember_similarity s = {EMBER_SIM_COSINE, 0.1f};
        ember_status st = ember_infonce(zf, z->rows, z->cols, z->cols, s, 1, &loss, g);
        CHECK(st == EMBER_OK, "after release: %s", ember_last_error_message());
        compare("infonce_cosine after ember_release_scratch", loss, &f, g, "grad");
        free(zf); free(g); free_fixture(&f);
        ember_release_scratch();
    }
    printf("%d passed, %d failed\n", passes, failures);
    return failures ? 1 : 0;
}
