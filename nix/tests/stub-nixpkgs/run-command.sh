# runCommand's builder: stdenv's setup gives the command bash with -eu and
# pipefail, a build directory as the working directory, and $out to create.
set -eu -o pipefail
eval "$buildCommand"
