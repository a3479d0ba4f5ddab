function test_ember(images, labels)
% Tests the ember MEX gateways on real MNIST digits (uncompressed IDX files).
% Run with the built .mex files on the path:
%   octave-cli --eval "addpath('target/mex', 'matlab'); test_ember('IMAGES', 'LABELS')"
% Prints a closing "N passed, M failed" line and raises an error (non-zero exit) on failure.
n = 2000;
[X, y] = read_mnist(images, labels, n);
passed = 0; failed = 0;
    function check(ok, what)
        if ok
            passed = passed + 1;
        else
            failed = failed + 1;
            fprintf('FAIL: %s\n', what);
        end
    end

% t-SNE, double input, rows as observations; single input gives the same bits.
Y = ember_tsne(X, struct('seed', 1, 'threads', 2));
check(isequal(size(Y), [n 2]) && isa(Y, 'double') && all(isfinite(Y(:))), 'ember_tsne shape/class/finite');
acc = knn_accuracy(Y, y);
fprintf('ember_tsne: 10-NN accuracy on %d digits %.4f\n', n, acc);
check(acc >= 0.8, sprintf('ember_tsne accuracy %.4f', acc));
Ys = ember_tsne(single(X), struct('seed', 1, 'threads', 1));
check(isa(Ys, 'single') && isequal(single(Y), Ys), 'single input or one thread changed t-SNE');

% UMAP and the contrastive spectrum.
U = ember_umap(X, struct('seed', 3));
acc = knn_accuracy(U, y);
fprintf('ember_umap: 10-NN accuracy %.4f\n', acc);
check(isequal(size(U), [n 2]) && acc >= 0.8, sprintf('ember_umap accuracy %.4f', acc));
S = ember_ne(X, struct('s', [0 0.5 1], 'seed', 3));
check(isequal(size(S), [n 2 3]) && all(isfinite(S(:))), 'ember_ne spectrum shape');
for p = 1:3
    acc = knn_accuracy(S(:, :, p), y);
    fprintf('ember_ne s = %.1f: 10-NN accuracy %.4f\n', (p - 1) / 2, acc);
    check(acc >= 0.8, sprintf('spectrum panel %d accuracy %.4f', p, acc));
end
S1 = ember_ne(X, struct('s', 0.5, 'seed', 3));
check(isequal(S1, S(:, :, 2)), 'ember_ne with one s differs from its spectrum panel');

% Neighbours: 1-based, never the row itself, ascending distances that are true distances.
[idx, dist] = ember_knn(X, 15, struct('method', 'exact'));
check(isequal(size(idx), [n 15]) && min(idx(:)) >= 1 && max(idx(:)) <= n, 'ember_knn index range');
check(~any(any(idx == (1:n)')), 'ember_knn returned a row as its own neighbour');
check(all(all(diff(dist, 1, 2) >= 0)), 'ember_knn distances not ascending');
truth = sqrt(sum((X(7, :) - X(idx(7, 15), :)) .^ 2));
check(abs(dist(7, 15) - truth) <= 1e-3 * truth, 'ember_knn distance differs from its definition');

% Bad input: a named MATLAB error, never a crash.
Xn = X; Xn(5, 3) = NaN;
expect_error(@() ember_tsne(Xn), 'ember:nonFinite');
expect_error(@() ember_tsne(X, struct('perplexity_typo', 5)), 'ember:unknownOption');
expect_error(@() ember_tsne(X(1:20, :), struct('perplexity', 30)), 'ember:perplexityTooLarge');
expect_error(@() ember_tsne('text'), 'ember:badInput');
expect_error(@() ember_tsne(X, struct('repulsion', 'magic')), 'ember:badOption');
expect_error(@() ember_tsne(X, struct('iters', -3)), 'ember:badOption');
expect_error(@() ember_umap(X, struct('min_dist', 2, 'spread', 1)), 'ember:invalidParameter');
expect_error(@() ember_knn(X, n), 'ember:invalidParameter');
expect_error(@() ember_knn(X), 'ember:usage');
    function expect_error(f, id)
        try
            f();
            check(false, sprintf('expected error %s, got none', id));
        catch err
            check(strcmp(err.identifier, id), sprintf('expected %s, got %s: %s', id, err.identifier, err.message));
        end
    end

fprintf('octave: %d passed, %d failed\n', passed, failed);
if failed > 0
    error('ember:testFailed', '%d checks failed', failed);
end
end

function [X, y] = read_mnist(images, labels, n)
f = fopen(images, 'r', 'ieee-be');
header = fread(f, 4, 'uint32');
assert(header(1) == 2051, 'not an IDX image file');
X = double(fread(f, [784, n], 'uint8=>uint8'))';
fclose(f);
f = fopen(labels, 'r', 'ieee-be');
fread(f, 2, 'uint32');
y = double(fread(f, n, 'uint8'));
fclose(f);
end

function acc = knn_accuracy(Y, y)
% Leave-one-out 10-NN majority vote in the embedding, neighbours from ember_knn.
idx = ember_knn(double(Y), 10, struct('method', 'exact'));
votes = mode(y(idx), 2);
acc = mean(votes == y);
end
