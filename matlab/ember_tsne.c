/* Y = ember_tsne(X, opts): t-SNE of the rows of X (single or double, N x D).
 * opts fields (all optional): dims, perplexity, early_iters, iters, exaggeration,
 * learning_rate, momentum, dof, theta, metric ('euclidean'|'cosine'),
 * repulsion ('auto'|'exact'|'bh'|'fft'), init ('pca'|'random'), knn ('auto'|'exact'|'approx'),
 * pca, threads, seed, verbose. Y is N x dims, in X's class. */
#include "ember_mex.h"

void mexFunction(int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]) {
    static const char fn[] = "ember_tsne";
    ember_mex_arity(fn, nrhs, 1, 2, nlhs, 1, "Y = ember_tsne(X, opts)");
    static const ember_choice repulsions[] = {{"auto", EMBER_REPULSION_AUTO},
                                              {"exact", EMBER_REPULSION_EXACT},
                                              {"bh", EMBER_REPULSION_BARNES_HUT},
                                              {"fft", EMBER_REPULSION_FFT},
                                              {NULL, 0}};
    static const ember_choice inits[] = {{"pca", EMBER_INIT_PCA}, {"random", EMBER_INIT_RANDOM}, {NULL, 0}};
    ember_tsne_params p = ember_tsne_params_default();
    int verbose = 0;
    const ember_option table[] = {
        {"dims", OPT_U32, &p.dims, NULL},
        {"perplexity", OPT_F32, &p.perplexity, NULL},
        {"early_iters", OPT_U32, &p.early_iters, NULL},
        {"iters", OPT_U32, &p.iters, NULL},
        {"exaggeration", OPT_F32, &p.exaggeration, NULL},
        {"learning_rate", OPT_F32, &p.learning_rate, NULL},
        {"momentum", OPT_F32, &p.momentum, NULL},
        {"dof", OPT_F32, &p.dof, NULL},
        {"theta", OPT_F32, &p.theta, NULL},
        {"metric", OPT_CHOICE, &p.metric, EMBER_METRICS},
        {"repulsion", OPT_CHOICE, &p.repulsion, repulsions},
        {"init", OPT_CHOICE, &p.init, inits},
        {"knn", OPT_CHOICE, &p.knn, EMBER_KNNS},
        {"pca", OPT_U32, &p.pca, NULL},
        {"threads", OPT_U32, &p.threads, NULL},
        {"seed", OPT_U64, &p.seed, NULL},
        {"verbose", OPT_BOOL, &verbose, NULL},
        {NULL, OPT_U32, NULL, NULL}};
    ember_mex_options(fn, nrhs > 1 ? prhs[1] : NULL, table);
    size_t n, d;
    const float *x = ember_mex_matrix(fn, prhs[0], &n, &d);
    float *y = (float *)mxMalloc(n * (p.dims ? p.dims : 1) * sizeof(float));
    ember_status st = ember_tsne(x, n, d, 1, n, &p, y, verbose ? ember_mex_progress : NULL, (void *)fn);
    ember_mex_check(fn, st);
    plhs[0] = ember_mex_result(y, n, p.dims, 1, mxIsSingle(prhs[0]));
    mxFree(y);
}
