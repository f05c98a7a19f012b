module github.com/spillway-dev/spillway/hack/images/pause

go 1.22
