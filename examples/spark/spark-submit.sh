#!/usr/bin/env bash
# SparkPi with spark-submit in cluster mode: the driver on your nodes, executors on spot capacity through spillway.
# Needs: a namespace `spark` with a ServiceAccount `spark` allowed to manage pods, services and configmaps there
# (https://spark.apache.org/docs/latest/running-on-kubernetes.html#rbac), and spillway installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${K8S_API:=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')}"
: "${SPARK_IMAGE:=apache/spark:3.5.3}"

exec spark-submit \
  --master "k8s://${K8S_API}" \
  --deploy-mode cluster \
  --name spark-pi \
  --class org.apache.spark.examples.SparkPi \
  --conf spark.kubernetes.namespace=spark \
  --conf spark.kubernetes.authenticate.driver.serviceAccountName=spark \
  --conf spark.kubernetes.container.image="${SPARK_IMAGE}" \
  --conf spark.kubernetes.driver.podTemplateFile="${here}/pod-templates/driver.yaml" \
  --conf spark.kubernetes.executor.podTemplateFile="${here}/pod-templates/executor.yaml" \
  --conf spark.executor.instances=8 \
  --conf spark.executor.cores=1 \
  --conf spark.executor.memory=1g \
  --conf spark.kubernetes.executor.request.cores=1 \
  --conf spark.dynamicAllocation.enabled=true \
  --conf spark.dynamicAllocation.shuffleTracking.enabled=true \
  --conf spark.dynamicAllocation.maxExecutors=50 \
  --conf spark.decommission.enabled=true \
  --conf spark.storage.decommission.enabled=true \
  --conf spark.storage.decommission.rddBlocks.enabled=true \
  --conf spark.storage.decommission.shuffleBlocks.enabled=true \
  local:///opt/spark/examples/jars/spark-examples_2.12-3.5.3.jar 10000
