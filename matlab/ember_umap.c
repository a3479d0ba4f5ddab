/* Y = ember_umap(X, opts): UMAP of the rows of X (single or double, N x D).
 * opts fields (all optional): dims, neighbors, min_dist, spread, epochs, negatives,
 * learning_rate, metric ('euclidean'|'cosine'), knn ('auto'|'exact'|'approx'),
 * init ('spectral'|'pca'|'random'), threads, seed, verbose. Y is N x dims, in X's class. */
#include "ember_mex.h"

void mexFunction(int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]) {
    static const char fn[] = "ember_umap";
    ember_mex_arity(fn, nrhs, 1, 2, nlhs, 1, "Y = ember_umap(X, opts)");
    static const ember_choice inits[] = {
        {"spectral", EMBER_INIT_SPECTRAL}, {"pca", EMBER_INIT_PCA}, {"random", EMBER_INIT_RANDOM}, {NULL, 0}};
    ember_umap_params p = ember_umap_params_default();
    int verbose = 0;
    const ember_option table[] = {
        {"dims", OPT_U32, &p.dims, NULL},
        {"neighbors", OPT_U32, &p.neighbors, NULL},
        {"min_dist", OPT_F32, &p.min_dist, NULL},
        {"spread", OPT_F32, &p.spread, NULL},
        {"epochs", OPT_U32, &p.epochs, NULL},
        {"negatives", OPT_U32, &p.negatives, NULL},
        {"learning_rate", OPT_F32, &p.learning_rate, NULL},
        {"metric", OPT_CHOICE, &p.metric, EMBER_METRICS},
        {"knn", OPT_CHOICE, &p.knn, EMBER_KNNS},
        {"init", OPT_CHOICE, &p.init, inits},
        {"threads", OPT_U32, &p.threads, NULL},
        {"seed", OPT_U64, &p.seed, NULL},
        {"verbose", OPT_BOOL, &verbose, NULL},
        {NULL, OPT_U32, NULL, NULL}};
    ember_mex_options(fn, nrhs > 1 ? prhs[1] : NULL, table);
    size_t n, d;
    const float *x = ember_mex_matrix(fn, prhs[0], &n, &d);
    float *y = (float *)mxMalloc(n * (p.dims ? p.dims : 1) * sizeof(float));
    ember_status st = ember_umap(x, n, d, 1, n, &p, y, verbose ? ember_mex_progress : NULL, (void *)fn);
    ember_mex_check(fn, st);
    ember_mex_warn(fn);
    plhs[0] = ember_mex_result(y, n, p.dims, 1, mxIsSingle(prhs[0]));
    mxFree(y);
}
