#!/usr/bin/env bash
# The .NET tool, from the repository root:  docker/pack-tool.sh OUTPUT_FOLDER [more `dotnet pack` arguments]
# Makes three packages (.NET 10's platform-specific tools; `dotnet tool install LmsProxy` picks one by itself):
#   LmsProxy            the package users name: it only says which platforms have a package of their own;
#   LmsProxy.linux-x64  the Native AOT executable (half the memory, ready in a tenth of the time: see the README),
#                       built here with clang;
#   LmsProxy.any        the JIT build, for every other platform (it needs the .NET 10 runtime, as tools do).
# Native AOT compiles only for the platform it runs on, so only linux-x64 is native from this Linux x64 machine.
# LMSPROXY_TOOL_NATIVE=0 makes one JIT package for every platform instead (no clang needed).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUTPUT_FOLDER [dotnet pack arguments]" >&2; exit 2; }
out=$1; shift
cd "$(dirname "$0")/.."
if [ "${LMSPROXY_TOOL_NATIVE:-1}" = 0 ] || [ "$(uname -sm)" != "Linux x86_64" ]; then
  dotnet pack src/LmsProxy -c Release -o "$out" "$@"
  exit
fi
# LmsProxyPlatformTool names the platforms (LmsProxy.csproj); each pack writes one package.
dotnet pack src/LmsProxy -c Release -o "$out" -p:LmsProxyPlatformTool=true "$@"
dotnet pack src/LmsProxy -c Release -o "$out" -p:LmsProxyPlatformTool=true -r linux-x64 -p:DebugType=none "$@"
dotnet pack src/LmsProxy -c Release -o "$out" -p:LmsProxyPlatformTool=true -r any "$@"
