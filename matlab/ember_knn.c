/* [idx, dist] = ember_knn(X, k, opts): the k nearest neighbours of every row of X among the
 * other rows (never the row itself), ascending. idx holds 1-based row numbers (double),
 * dist Euclidean distances or 1 - cosine similarity, both N x k.
 * opts fields (all optional): metric ('euclidean'|'cosine'), method ('auto'|'exact'|'approx'),
 * threads, seed. */
#include "ember_mex.h"

void mexFunction(int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]) {
    static const char fn[] = "ember_knn";
    ember_mex_arity(fn, nrhs, 2, 3, nlhs, 2, "[idx, dist] = ember_knn(X, k, opts)");
    uint32_t metric = EMBER_METRIC_EUCLIDEAN, method = EMBER_KNN_AUTO, threads = 0;
    uint64_t seed = 42;
    const ember_option table[] = {
        {"metric", OPT_CHOICE, &metric, EMBER_METRICS},
        {"method", OPT_CHOICE, &method, EMBER_KNNS},
        {"threads", OPT_U32, &threads, NULL},
        {"seed", OPT_U64, &seed, NULL},
        {NULL, OPT_U32, NULL, NULL}};
    ember_mex_options(fn, nrhs > 2 ? prhs[2] : NULL, table);
    size_t k = (size_t)ember_mex_integer(fn, "k", prhs[1], 1, 4294967295.0);
    size_t n, d;
    const float *x = ember_mex_matrix(fn, prhs[0], &n, &d);
    uint32_t *idx = (uint32_t *)mxMalloc(n * k * sizeof(uint32_t));
    float *dist = (float *)mxMalloc(n * k * sizeof(float));
    ember_mex_check(fn, ember_knn(x, n, d, 1, n, k, metric, method, threads, seed, idx, dist, NULL, NULL));
    plhs[0] = mxCreateDoubleMatrix((mwSize)n, (mwSize)k, mxREAL);
    double *out = mxGetPr(plhs[0]);
    for (size_t i = 0; i < n; i++)
        for (size_t q = 0; q < k; q++) out[q * n + i] = (double)idx[i * k + q] + 1.0;
    if (nlhs > 1) plhs[1] = ember_mex_result(dist, n, k, 1, 0);
    mxFree(idx);
    mxFree(dist);
}
