module kfbench/peer

go 1.19
