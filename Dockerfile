# maintd container: slim, non-root, health-checked on /healthz.
#   docker build -t maintd . && docker run -p 8787:8787 -v $PWD/windows.yaml:/etc/maintd/windows.yaml maintd
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scheduler ./scheduler
COPY notifiers ./notifiers
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/maintd --create-home maintd
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/* && rm -rf /wheels
COPY windows.yaml /etc/maintd/windows.yaml
ENV MAINTD_CONFIG=/etc/maintd/windows.yaml \
    MAINTD_DATABASE=/var/lib/maintd/maintd.db \
    MAINTD_LISTEN=0.0.0.0:8787 \
    PYTHONUNBUFFERED=1
USER maintd
WORKDIR /var/lib/maintd
EXPOSE 8787
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8787/healthz', timeout=2).status == 200 else 1)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["maintd"]
CMD ["run", "--log-format", "json"]
