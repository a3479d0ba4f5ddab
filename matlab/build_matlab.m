% Builds the ember MEX gateways with MATLAB's mex, linking libember.a statically.
% Run from this folder after `cargo build --release -p ember-capi` at the repository root.
% (Not run in ember's CI, which has GNU Octave, not MATLAB; the sources use only the mx API
% both share and are built and tested there with build_octave.sh.)
root = fileparts(pwd);
lib = fullfile(root, 'target', 'release', 'libember.a');
for f = {'ember_tsne', 'ember_umap', 'ember_ne', 'ember_knn'}
    mex(['-I' fullfile(root, 'include')], [f{1} '.c'], lib, '-lpthread', '-ldl', '-lm');
end
