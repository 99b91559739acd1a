# The image the Kubernetes manifests run (launch/k8s/): bonefrac installed with its gpu extra
# (TensorFlow's CUDA libraries) and dicom extra. Everything a pod runs comes from the installed
# package (`python -m bonefrac.cluster`, `python -m bonefrac.train`, `tensorboard`): no source
# checkout in the image. UNTESTED: never built (no Docker daemon or registry here).
#   docker build -t bonefrac:latest .
FROM python:3.11-slim
WORKDIR /tmp/bonefrac
COPY pyproject.toml setup.cfg README.md ./
COPY bonefrac ./bonefrac
COPY bonefrac_tfds ./bonefrac_tfds
RUN pip install --no-cache-dir ".[gpu,dicom]" && rm -rf /tmp/bonefrac
WORKDIR /
# TensorBoard's and the workers' ports (launch/k8s/)
EXPOSE 2222 6006
CMD ["python", "-m", "bonefrac.train", "--help"]
