# syntax=docker/dockerfile:1
# One image for both modes: `docker run IMAGE web` or `docker run IMAGE worker`.
#   docker build -t kuberollouttrigger .
# The permission flags are not repeated here: `deno task compile` applies the
# "compiled" permission set from deno.json (net, env, read of the in-cluster
# service-account files and /etc/kuberollouttrigger); web mode revokes read
# at startup.

FROM denoland/deno:debian-2.9.6 AS build
WORKDIR /src
COPY deno.json deno.lock ./
COPY main.ts ./
COPY lib/ lib/
COPY config/ config/
COPY shared/ shared/
COPY web/ web/
COPY worker/ worker/
# --frozen: fail instead of resolving anything not already in deno.lock.
RUN deno install --frozen --entrypoint main.ts \
 && deno task compile

# A deno compile binary is linked against glibc and libgcc_s; distroless "cc"
# ships exactly those (and CA certificates), no shell and no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/dist/kuberollouttrigger /kuberollouttrigger
# distroless's nonroot user; the k8s/ manifests run it with a read-only root.
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/kuberollouttrigger"]
CMD ["help"]
