# Stand-in for mmdet-rfla's configs/rfla/aitodv2_faster_r50_rfla_kld_1x.py (structure only).
model = dict(
    type='FasterRCNN',
    rpn_head=dict(type='RPNHead', anchor_generator=dict(type='AnchorGenerator', scales=[2])),
    roi_head=dict(type='StandardRoIHead', bbox_head=dict(type='Shared2FCBBoxHead',
                                                         num_classes=8)),
    test_cfg=dict(rpn=dict(nms_pre=3000, max_per_img=3000),
                  rcnn=dict(score_thr=0.05, max_per_img=3000)))
dataset_type = 'AITODDataset'
data_root = '/home/user/data/AI-TOD/'
data = dict(
    samples_per_gpu=2, workers_per_gpu=2,
    train=dict(type=dataset_type, ann_file=data_root + 'annotations/aitod_trainval_v1.json',
               img_prefix=data_root + 'trainval/images/'),
    val=dict(type=dataset_type, ann_file=data_root + 'annotations/aitod_test_v1.json',
             img_prefix=data_root + 'test/images/'),
    test=dict(type=dataset_type, ann_file=data_root + 'annotations/aitod_test_v1.json',
              img_prefix=data_root + 'test/images/'))
optimizer = dict(type='SGD', lr=0.005, momentum=0.9, weight_decay=0.0001)
lr_config = dict(policy='step', warmup='linear', warmup_iters=500, step=[8, 11])
runner = dict(type='EpochBasedRunner', max_epochs=12)
evaluation = dict(interval=12, metric='bbox')
