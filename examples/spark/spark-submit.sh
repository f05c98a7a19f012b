#!/usr/bin/env bash
# SparkPi with spark-submit in cluster mode from your machine: the driver on your nodes, executors on spot capacity
# through spillway. Needs Spark 4.x's spark-submit on PATH, kubectl's current context, rbac.yaml applied, and spillway
# installed. Without a local Spark, run submit-job.yaml instead (spark-submit from the spark image, in the cluster).
# SPARK_IMAGE: an image with Spark 4.2 and an entrypoint for Spark's driver/executor pods; the default is the one
# make cluster-up pushes to the local cluster's registry (hack/images/spark.ts), whose SparkPi is ours:
# SPARK_CLASS and SPARK_JAR name Spark's own for an apache/spark image.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${K8S_API:=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')}"
: "${SPARK_IMAGE:=localhost:5000/spillway/spark:4.2.0}"
: "${SPARK_CLASS:=dev.spillway.examples.SparkPi}"
: "${SPARK_JAR:=local:///opt/spark/examples/jars/spark-examples.jar}"

exec spark-submit \
  --master "k8s://${K8S_API}" \
  --deploy-mode cluster \
  --name spark-pi \
  --class "${SPARK_CLASS}" \
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
  "${SPARK_JAR}" 10000
