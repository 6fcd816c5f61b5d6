# The functions of nixpkgs' lib that kmodidx's nix/ files use, with the same
# meaning (a subset of their behaviour, enough for those files).
rec {
  hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;

  removePrefix =
    prefix: s:
    let
      n = builtins.stringLength prefix;
    in
    if hasPrefix prefix s then builtins.substring n (builtins.stringLength s - n) s else s;

  optionalString = cond: s: if cond then s else "";

  optionals = cond: xs: if cond then xs else [ ];

  escapeShellArg = arg: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString arg)}'";

  escapeShellArgs = args: builtins.concatStringsSep " " (map escapeShellArg args);

  cleanSourceWith =
    {
      src,
      filter ? _: _: true,
      name ? "source",
    }:
    builtins.path {
      path = src;
      inherit filter name;
    };
}
