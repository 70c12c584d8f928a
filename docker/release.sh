#!/usr/bin/env bash
# Release builds, one command, from the repository root:  docker/release.sh [output folder, default artifacts/release]
# Makes one executable per platform (no .NET needed on the machine) with the settings file next to it, packed as
# lmsproxy-<version>-<rid>.tar.gz (.zip for Windows); the .NET tool packages (docker/pack-tool.sh); and
# SHA256SUMS over all of them:
#   linux-x64    Native AOT (half the memory, ready in a tenth of the time: see the README), built here with clang;
#   linux-arm64, osx-arm64, win-x64: self-contained, trimmed, single file (JIT): Native AOT compiles only for the
#                platform it runs on (and macOS and Windows need their own linkers), which this Linux x64 machine is not.
# Set LMSPROXY_RELEASE_NATIVE=0 to make linux-x64 a single file too (no clang). The runtime packs come from NuGet.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-artifacts/release}
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
version=$(dotnet msbuild src/LmsProxy -getProperty:Version -nologo | tr -d '[:space:]')
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

for rid in linux-x64 linux-arm64 osx-arm64 win-x64; do
  stage="$out/stage/lmsproxy-$version-$rid"
  echo "== $rid"
  if [ "$rid" = linux-x64 ] && [ "${LMSPROXY_RELEASE_NATIVE:-1}" = 1 ] && [ "$(uname -m)" = x86_64 ]; then
    build=(-p:PublishAot=true)
  else
    # Uncompressed: compression would cost start-up time and resident memory (the bundle is unpacked into it).
    build=(--self-contained true -p:PublishSingleFile=true -p:PublishTrimmed=true -p:IncludeNativeLibrariesForSelfExtract=true)
  fi
  timeout 900 dotnet publish src/LmsProxy -c Release -r "$rid" "${build[@]}" -p:DebugType=none \
    --artifacts-path "$out/build" -o "$stage" >"$out/publish-$rid.log" 2>&1 \
    || { tail -20 "$out/publish-$rid.log" >&2; exit 1; }
  echo "   ${build[0]}"
  # The executable and its settings file, nothing else; the native one also keeps SQLite's library (the single files
  # carry theirs inside), without which the store cannot open.
  for f in "$stage"/*; do
    case "$(basename "$f")" in LmsProxy|LmsProxy.exe|appsettings.json|libe_sqlite3.so) ;; *) rm -rf "$f" ;; esac
  done
  if [ "$rid" = win-x64 ]; then
    (cd "$out/stage" && python3 -c 'import shutil,sys; shutil.make_archive(sys.argv[1], "zip", ".", sys.argv[2])' "$out/lmsproxy-$version-$rid" "lmsproxy-$version-$rid")
  else
    tar -C "$out/stage" -czf "$out/lmsproxy-$version-$rid.tar.gz" "lmsproxy-$version-$rid"
  fi
done

echo "== dotnet tool"
LMSPROXY_TOOL_NATIVE=${LMSPROXY_RELEASE_NATIVE:-1} timeout 900 docker/pack-tool.sh "$out" --artifacts-path "$out/build" >"$out/pack.log" 2>&1 \
  || { tail -20 "$out/pack.log" >&2; exit 1; }

rm -rf "$out/stage" "$out/build" "$out"/*.log
(cd "$out" && sha256sum lmsproxy-* LmsProxy.*.nupkg >SHA256SUMS)
echo "release $version in $out:"
(cd "$out" && ls -l lmsproxy-* LmsProxy.*.nupkg SHA256SUMS | awk '{ printf "  %-40s %8.1f MB\n", $NF, $5 / 1e6 }')
